"""Prompt logprobs over HTTP: ``echo`` with ``logprobs`` on /v1/completions (OpenAI's legacy
format, first prompt token ``null``; ``max_tokens`` 0 or 1), exactly as lm-eval's
``local-completions`` loglikelihood requests send and parse them, checked against
transformers; and ``prompt_logprobs`` on the native /generate, with and without a tokenizer."""

from __future__ import annotations

import json
from operator import itemgetter

import httpx
import pytest
import torch

from .test_bad_input import check_error

TOL = 1e-4  # fp32 on the CPU against transformers in fp32


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def hf_logprobs(model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()

    def run(ids: list[int]) -> torch.Tensor:
        with torch.no_grad():
            return torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)

    return run


def lm_eval_parse(body: dict, ctxlens: list[int]) -> list[tuple[float, bool]]:
    """What lm-eval 0.4's ``LocalCompletionsAPI.parse_logprobs`` computes from a response."""
    res = []
    for choice, ctxlen in zip(sorted(body["choices"], key=itemgetter("index")), ctxlens):
        token_logprobs = choice["logprobs"]["token_logprobs"][ctxlen:-1]
        top_logprobs = choice["logprobs"]["top_logprobs"][ctxlen:-1]
        greedy = all(t == max(top.values()) for t, top in zip(token_logprobs, top_logprobs))
        res.append((sum(token_logprobs), greedy))
    return res


def test_lm_eval_loglikelihood_requests(http, server, hf_logprobs):
    """lm-eval's loglikelihood payload (token-id prompts batched, echo, logprobs 1,
    max_tokens 1): the continuation's summed logprob and is-greedy flag equal transformers'."""
    tok = server.engine.tokenizer
    pairs = [("def fibonacci(n):", " return n"), ("import json\n", "import os"),
             ("x = 1\ny =", " 2")]
    prompts, ctxlens = [], []
    for ctx, cont in pairs:
        c, w = tok.encode(ctx), tok.encode(ctx + cont)
        prompts.append(w)
        ctxlens.append(len(c))
    r = http.post("/v1/completions", json={
        "model": server.model, "prompt": prompts, "temperature": 0, "max_tokens": 1,
        "logprobs": 1, "seed": 1234, "echo": True})
    assert r.status_code == 200, r.text
    body = r.json()
    for choice, ids in zip(body["choices"], prompts):
        lp = choice["logprobs"]
        assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(ids) + 1
        assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
        assert all(len(t) == 1 for t in lp["top_logprobs"][1:])
        assert lp["text_offset"] == sorted(lp["text_offset"])
    for (total, greedy), ids, ctxlen in zip(lm_eval_parse(body, ctxlens), prompts, ctxlens):
        ref = hf_logprobs(ids)
        want = sum(ref[p - 1, ids[p]].item() for p in range(ctxlen, len(ids)))
        assert abs(total - want) < TOL * len(ids)
        assert greedy == all(ref[p - 1].argmax().item() == ids[p]
                             for p in range(ctxlen, len(ids)))


def test_echo_max_tokens_zero(http, server, hf_logprobs):
    """``max_tokens: 0`` with echo: the prompt back, with its logprobs and top logprobs."""
    prompt = "def add(a, b):\n    return a + b"
    r = http.post("/v1/completions", json={"model": server.model, "prompt": prompt,
                                           "max_tokens": 0, "echo": True, "logprobs": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    (choice,) = body["choices"]
    ids = server.engine.tokenizer.encode(prompt)
    assert choice["text"] == prompt and choice["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 0
    assert body["usage"]["prompt_tokens"] == len(ids)
    lp = choice["logprobs"]
    ref = hf_logprobs(ids)
    assert lp["token_logprobs"][0] is None and len(lp["token_logprobs"]) == len(ids)
    for p in range(1, len(ids)):
        assert abs(lp["token_logprobs"][p] - ref[p - 1, ids[p]].item()) < TOL
        assert len(lp["top_logprobs"][p]) <= 2
        assert max(lp["top_logprobs"][p].values()) == pytest.approx(
            ref[p - 1].max().item(), abs=TOL)
    no_echo = http.post("/v1/completions", json={"model": server.model, "prompt": prompt,
                                                 "max_tokens": 0})
    check_error(no_echo, 400, "max_tokens")


def test_echo_logprobs_stream(http, server):
    """Streaming: the first chunk is the echoed prompt with its logprobs, then the
    completion's tokens; together they equal the non-streamed answer."""
    ids = [5, 6, 7, 8, 9, 10]
    payload = {"model": server.model, "prompt": ids, "max_tokens": 3, "echo": True,
               "logprobs": 1, "temperature": 0, "ignore_eos": True}
    whole = http.post("/v1/completions", json=payload).json()["choices"][0]
    chunks = []
    with http.stream("POST", "/v1/completions", json={**payload, "stream": True}) as r:
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(json.loads(line[6:])["choices"][0])
    first = chunks[0]
    assert first["text"] == server.engine.tokenizer.decode(ids, skip_special_tokens=True)
    assert len(first["logprobs"]["tokens"]) == len(ids)
    assert first["logprobs"]["token_logprobs"][0] is None
    tokens = [t for c in chunks if c["logprobs"] for t in c["logprobs"]["token_logprobs"]]
    assert tokens == pytest.approx(whole["logprobs"]["token_logprobs"], abs=TOL)
    assert "".join(c["text"] for c in chunks) == whole["text"]


def test_native_prompt_logprobs(http, server, hf_logprobs):
    ids = [3, 40, 41, 42, 43, 44, 45]
    r = http.post("/generate", json={"input_ids": ids, "sampling_params": {
        "max_new_tokens": 0, "prompt_logprobs": 2}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["output_ids"] == [] and body["meta_info"]["finish_reason"] == "length"
    plp = body["prompt_logprobs"]
    ref = hf_logprobs(ids)
    assert plp[0] is None and [e["token_id"] for e in plp[1:]] == ids[1:]
    for p, e in enumerate(plp[1:], start=1):
        assert abs(e["logprob"] - ref[p - 1, ids[p]].item()) < TOL
        assert [t for t, _ in e["top"]] == ref[p - 1].topk(2).indices.tolist()


def test_native_prompt_logprobs_without_tokenizer(bare_server):
    """A tokenizer-less model: prompt logprobs by token id on /generate (echo on
    /v1/completions stays a 400 that says to come here)."""
    ids = [[1, 2, 3, 4], [9, 8]]
    with httpx.Client(base_url=bare_server.base_url, timeout=60) as c:
        r = c.post("/generate", json={"input_ids": ids, "sampling_params": {
            "max_new_tokens": 1, "prompt_logprobs": 0, "temperature": 0}})
    assert r.status_code == 200, r.text
    for item, row in zip(r.json(), ids):
        plp = item["prompt_logprobs"]
        assert plp[0] is None and [e["token_id"] for e in plp[1:]] == row[1:]
        assert all(e["top"] == [] and e["logprob"] <= 0 for e in plp[1:])
        assert len(item["output_ids"]) == 1
