"""lm-eval end to end: its ``local-completions`` model runs the repository's tiny
multiple-choice task (tasks/anyware_tiny_mc.yaml, a local JSON Lines file) against the real
server over HTTP, with the tokenizer read from the local model directory. Offline: no dataset
hub, no model hub. Each choice's loglikelihood that lm-eval records is checked against
transformers on the same tokens, and the server's request counter must have moved."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import torch

lm_eval = pytest.importorskip(
    "lm_eval", reason="lm-eval is not installed: pip install -e '.[dev]' brings lm-eval[api]")

REPO_ROOT = Path(__file__).resolve().parents[2]
TASKS_DIR = Path(__file__).resolve().parent / "tasks"
TASK = "anyware_tiny_mc"
N_ITEMS = 8
N_CHOICES = 4
TOL = 1e-4  # per token: fp32 on the CPU against transformers in fp32


def _answered(base_url: str, endpoint: str) -> float:
    """``anyware_http_requests_total`` for ``endpoint`` answered 200, from /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{base_url}/metrics", timeout=30).text
    return sum(
        s.value
        for fam in text_string_to_metric_families(text) if fam.name == "anyware_http_requests"
        for s in fam.samples
        if s.name.endswith("_total") and s.labels.get("endpoint") == endpoint
        and s.labels.get("status") == "200"
    )


def _reference_loglikelihood(model, tok, context: str, continuation: str) -> tuple[float, int]:
    """What lm-eval's loglikelihood should be, from transformers: the context's trailing
    spaces move to the continuation, the pair is encoded whole and split at the context's
    length (lm-eval's ``_encode_pair``), and the continuation's log-softmax values summed.
    Returns the sum and the continuation's token count."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tok.encode(context + continuation, add_special_tokens=False)
    ctxlen = len(tok.encode(context, add_special_tokens=False))
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([whole])).logits[0].float(), dim=-1)
    total = sum(logp[p - 1, whole[p]].item() for p in range(ctxlen, len(whole)))
    return total, len(whole) - ctxlen


@pytest.mark.parametrize("tokenizer_backend", ["huggingface", "remote"])
def test_lm_eval_local_completions_multiple_choice(tokenizer_backend, server, model_dir,
                                                   monkeypatch, tmp_path):
    """``huggingface``: lm-eval tokenizes with the model directory's tokenizer; ``remote``:
    with the server's /tokenizer_info and /tokenize (what its ``auto`` backend picks when the
    server offers them)."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(var, "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    import datasets
    from lm_eval.tasks import TaskManager
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # datasets reads its settings at import: an earlier import in this process keeps them
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(REPO_ROOT)  # the task's data_files path is relative to the repository

    endpoints = ("/v1/completions", "/tokenize")
    before = {e: _answered(server.base_url, e) for e in endpoints}
    results = lm_eval.simple_evaluate(
        model="local-completions",
        model_args={
            "base_url": f"{server.v1}/completions",
            "model": server.model,
            "tokenizer_backend": tokenizer_backend,
            "tokenizer": str(model_dir) if tokenizer_backend == "huggingface" else None,
            "batch_size": 8,
            "num_concurrent": 1,
            "max_retries": 1,
            "max_length": 512,
        },
        tasks=[TASK],
        # only this task: indexing lm-eval's thousands of built-in task configs takes seconds
        task_manager=TaskManager(include_path=str(TASKS_DIR), include_defaults=False),
        log_samples=True,
        bootstrap_iters=0,
        random_seed=0,
    )
    after = {e: _answered(server.base_url, e) for e in endpoints}

    assert results is not None
    metrics = results["results"][TASK]
    assert 0.0 <= metrics["acc,none"] <= 1.0 and 0.0 <= metrics["acc_norm,none"] <= 1.0
    samples = results["samples"][TASK]
    assert len(samples) == N_ITEMS
    # 32 loglikelihood requests (8 items x 4 choices) in batches of 8: at least 4 HTTP
    # requests, every one answered 200 by this server.
    assert after["/v1/completions"] - before["/v1/completions"] >= N_ITEMS * N_CHOICES / 8
    if tokenizer_backend == "remote":  # every context and continuation tokenized by us
        assert after["/tokenize"] - before["/tokenize"] >= N_ITEMS * N_CHOICES

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    for sample in samples:
        assert sample["acc"] in (0.0, 1.0) and sample["acc_norm"] in (0.0, 1.0)
        assert len(sample["arguments"]) == len(sample["resps"]) == N_CHOICES
        got = [resp[0][0] for resp in sample["resps"]]
        ref = [_reference_loglikelihood(model, tok, *args) for args in sample["arguments"]]
        want = [total for total, _ in ref]
        for g, (w, n_tokens) in zip(got, ref):
            assert n_tokens >= 1 and abs(g - w) < TOL * n_tokens, (got, want)
        # lm-eval's acc: the choice with the highest loglikelihood is the target
        picked = max(range(N_CHOICES), key=want.__getitem__)
        assert sample["acc"] == float(picked == sample["target"])
    assert metrics["acc,none"] == pytest.approx(sum(s["acc"] for s in samples) / N_ITEMS)
