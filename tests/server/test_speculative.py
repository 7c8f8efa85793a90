"""A server whose engine speculates (n-gram prompt lookup, an EAGLE-3 head) answers the openai
client exactly as one that does not, and reports its acceptance in /metrics; the CLI's
speculative flags reach the engine options."""

from __future__ import annotations

import httpx
import pytest

from .conftest import _serve


@pytest.fixture(scope="module", params=["ngram", "eagle3"])
def spec_server(request, model_dir, tmp_path_factory):
    from anyware import Engine

    # the off-switch is tested on its own (tests/engine): here every step may speculate
    spec = dict(speculative_algorithm=request.param, speculative_num_draft_tokens=3,
                speculative_auto_off=False)
    if request.param == "eagle3":
        from tests.engine.eagle3_heads import random_head

        from .tiny_model import VOCAB_SIZE

        head = random_head(tmp_path_factory.mktemp("eagle3-head"), draft_vocab=256,
                           vocab=VOCAB_SIZE)
        spec["speculative_draft_model"] = str(head)
    eng = Engine(model=str(model_dir), show_progress=False, **spec)
    yield from _serve(eng, None)
    eng.shutdown()


def test_openai_answers_identical_with_speculation(client, spec_server):
    import openai

    spec_client = openai.OpenAI(base_url=spec_server.v1, api_key="unused", max_retries=0,
                                timeout=60)
    prompts = ["the cat sat on the mat, the cat sat on the", "one two three one two three"]
    for prompt in prompts:
        kw = dict(model="tiny-llama", prompt=prompt, max_tokens=24, temperature=0)
        assert (spec_client.completions.create(**kw).choices[0].text
                == client.completions.create(**kw).choices[0].text)
    msgs = [{"role": "user", "content": "repeat: a b c a b c a b c"}]
    kw = dict(model="tiny-llama", messages=msgs, max_tokens=20, temperature=0)
    assert (spec_client.chat.completions.create(**kw).choices[0].message.content
            == client.chat.completions.create(**kw).choices[0].message.content)
    metrics = httpx.get(f"{spec_server.base_url}/metrics").text
    stats = spec_server.engine.stats()
    assert stats.verify_steps > 0
    assert f"anyware_spec_verify_steps_total {float(stats.verify_steps)}" in metrics
    assert "anyware_spec_mean_acceptance_length" in metrics


def test_native_meta_info_reports_the_request_acceptance(server, spec_server):
    """The native endpoint's meta_info counts this request's verify steps and kept drafts
    (the engine's counters move by as much: it serves nothing else meanwhile)."""
    body = {"text": "one two three one two three one two three one two",
            "sampling_params": {"max_new_tokens": 24, "temperature": 0, "ignore_eos": True}}
    before = spec_server.engine.stats()
    meta = httpx.post(f"{spec_server.base_url}/generate", json=body).json()["meta_info"]
    after = spec_server.engine.stats()
    assert meta["spec_verify_ct"] == after.verify_steps - before.verify_steps > 0
    assert meta["spec_accepted_tokens"] == after.accepted_tokens - before.accepted_tokens
    assert meta["spec_accept_length"] == pytest.approx(
        (meta["spec_accepted_tokens"] + meta["spec_verify_ct"]) / meta["spec_verify_ct"])
    plain = httpx.post(f"{server.base_url}/generate", json=body).json()["meta_info"]
    assert plain["spec_verify_ct"] == plain["spec_accepted_tokens"] == 0
    assert plain["spec_accept_length"] == 0.0


def test_cli_speculative_flags_reach_the_engine():
    from anyware.cli.main import build_parser
    from anyware.cli.options import SPECULATIVE_ALGORITHMS, engine_kwargs
    from anyware.spec import ALGORITHMS

    assert SPECULATIVE_ALGORITHMS == ALGORITHMS
    args = build_parser().parse_args(
        ["serve", "--speculative-algorithm", "draft", "--speculative-draft-model", "d",
         "--speculative-num-draft-tokens", "5"])
    kw = engine_kwargs(args)
    assert kw["speculative_algorithm"] == "draft" and kw["speculative_draft_model"] == "d"
    sglang_spelling = engine_kwargs(build_parser().parse_args(
        ["serve", "--speculative-algorithm", "eagle3", "--speculative-draft-model-path", "h"]))
    assert sglang_spelling["speculative_draft_model"] == "h"
    assert kw["speculative_num_draft_tokens"] == 5 and kw["speculative_acceptance"] == "exact"
    assert kw["speculative_auto_off"] is True
    off = engine_kwargs(build_parser().parse_args(
        ["serve", "--speculative-algorithm", "ngram", "--speculative-disable-auto-off"]))
    assert off["speculative_auto_off"] is False and off["speculative_ngram_tree"] is False
    tree = engine_kwargs(build_parser().parse_args(
        ["serve", "--speculative-algorithm", "ngram", "--speculative-ngram-tree"]))
    assert tree["speculative_ngram_tree"] is True and tree["speculative_eagle_topk"] == 1
    eagle = engine_kwargs(build_parser().parse_args(
        ["serve", "--speculative-algorithm", "eagle3", "--speculative-draft-model-path", "h",
         "--speculative-eagle-topk", "4"]))
    assert eagle["speculative_eagle_topk"] == 4
    assert "speculative_algorithm" not in engine_kwargs(build_parser().parse_args(["serve"]))
