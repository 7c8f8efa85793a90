"""Overlap scheduling changes when the host learns each token, never which token: every
output (greedy, seeded sampling, penalties, logprobs, stops, retraction, abort) is identical
with overlap on and off."""

import pytest
from anyware import Engine, SamplingParams

from tests.engine.conftest import ENGINE_DEFAULTS
from tests.engine.tiny_models import random_prompts

BASE = {k: v for k, v in ENGINE_DEFAULTS.items() if k != "overlap_schedule"}


def run(model, prompts, params, **kw):
    out = {}
    for overlap in (False, True):
        with Engine(str(model), overlap_schedule=overlap, **BASE, **kw) as engine:
            res = engine.generate(prompts, params)
            engine.check_invariants()
            stats = engine.stats()
        out[overlap] = ([[(c.token_ids, c.finish_reason, c.stop_reason,
                           [(lp.token_id, round(lp.logprob, 5)) for lp in (c.logprobs or [])])
                          for c in r.outputs] for r in res], stats)
    return out


def test_greedy_stops_and_lengths_identical(model_dir):
    prompts = random_prompts((5, 17, 9, 30, 3, 12), seed=11)
    probe = run(model_dir("llama"), prompts[:1], SamplingParams(max_new_tokens=12, temperature=0,
                                                                ignore_eos=True), page_size=8)
    stop_tok = probe[False][0][0][0][0][3]
    params = [SamplingParams(max_new_tokens=n, temperature=0, ignore_eos=i % 2 == 0,
                             stop_token_ids=[stop_tok] if i % 3 == 0 else [])
              for i, n in enumerate((12, 1, 7, 20, 3, 16))]
    out = run(model_dir("llama"), prompts, params, page_size=8)
    assert out[True][0] == out[False][0]
    assert out[True][1].generated_tokens == out[False][1].generated_tokens


@pytest.mark.parametrize("arch", ["qwen3", "mistral"])
def test_sampling_penalties_and_logprobs_identical(model_dir, arch):
    prompts = random_prompts((7, 12, 30, 4), seed=5)
    params = [
        SamplingParams(max_new_tokens=14, temperature=0.9, top_p=0.9, top_k=40, seed=3,
                       ignore_eos=True, logprobs=3),
        SamplingParams(max_new_tokens=10, temperature=0, repetition_penalty=1.3,
                       frequency_penalty=0.5, presence_penalty=0.4, ignore_eos=True),
        SamplingParams(max_new_tokens=9, temperature=1.2, seed=8, n=2, ignore_eos=True,
                       repetition_penalty=1.2, logprobs=0),
        SamplingParams(max_new_tokens=6, temperature=0, logprobs=2),
    ]
    out = run(model_dir(arch), prompts, params, page_size=16, chunked_prefill_size=8)
    assert out[True][0] == out[False][0]


def test_retraction_and_prefix_cache_identical(model_dir):
    prompts = random_prompts((40, 33, 25, 38, 29), seed=2)
    prompts = [prompts[0][:20] + p for p in prompts]  # a shared prefix for the cache
    params = SamplingParams(max_new_tokens=24, temperature=0, ignore_eos=True)
    out = run(model_dir("llama"), prompts, params, page_size=8, kv_cache_bytes=512 * 8 * 30,
              schedule_conservativeness=0)  # no output reserve: the requests are retracted
    assert out[True][0] == out[False][0]
    assert out[True][1].retractions > 0 and out[True][1].cached_prompt_tokens > 0


def test_abort_with_a_step_in_flight_frees_every_page(model_dir):
    with Engine(str(model_dir("llama")), overlap_schedule=True, page_size=8, **BASE) as engine:
        prompts = random_prompts((9, 14), seed=4)
        stream = engine.stream(prompts[0], SamplingParams(max_new_tokens=200, temperature=0,
                                                          ignore_eos=True))
        next(stream)
        next(stream)
        stream.close()  # aborted while its next decode is in flight
        rest = engine.generate([prompts[1]], SamplingParams(max_new_tokens=5, temperature=0,
                                                            ignore_eos=True))
        assert len(rest[0].outputs[0].token_ids) == 5
        for _ in range(100):
            s = engine.stats()
            if s.running == 0 and s.waiting == 0:
                break
        assert s.running == 0 and s.waiting == 0 and s.kv_pages_used == 0
        engine.check_invariants()
