"""Greedy output is token-identical to transformers for every architecture, batch shape,
page size and chunking setting."""

import pytest
from anyware import Engine, SamplingParams

from tests.engine.conftest import ENGINE_DEFAULTS, hf_references
from tests.engine.tiny_models import ARCHS

LENGTHS = (5, 17, 40, 9, 64)
NEW = 24


@pytest.fixture(scope="module")
def refs(model_dir):
    return hf_references(model_dir, LENGTHS, NEW)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize(("page_size", "chunk"), [(1, 2048), (16, 2048), (16, 7), (8, 32)])
def test_greedy_matches_transformers(model_dir, refs, arch, page_size, chunk):
    prompts, expected, _ = refs(arch)
    with Engine(str(model_dir(arch)), page_size=page_size, chunked_prefill_size=chunk,
                **ENGINE_DEFAULTS) as engine:
        outs = engine.generate(prompts, SamplingParams(max_new_tokens=NEW, temperature=0,
                                                       ignore_eos=True))
        engine.check_invariants()
    for out, exp in zip(outs, expected):
        assert out.outputs[0].token_ids == exp
        assert out.outputs[0].finish_reason == "length"


def test_logprobs_close_to_transformers(model_dir, refs):
    prompts, expected, ref_lps = refs("llama")
    with Engine(str(model_dir("llama")), **ENGINE_DEFAULTS) as engine:
        outs = engine.generate(prompts, SamplingParams(max_new_tokens=NEW, temperature=0,
                                                       ignore_eos=True, logprobs=3))
    for out, exp, lps in zip(outs, expected, ref_lps):
        comp = out.outputs[0]
        assert comp.token_ids == exp
        got = [lp.logprob for lp in comp.logprobs]
        assert max(abs(a - b) for a, b in zip(got, lps)) < 1e-4
        for lp in comp.logprobs:  # greedy: the chosen token is the top-1 alternative
            assert lp.top[0][0] == lp.token_id and len(lp.top) == 3


def test_mixed_batches_off_matches(model_dir, refs):
    prompts, expected, _ = refs("qwen2")
    with Engine(str(model_dir("qwen2")), mixed_batches=False, chunked_prefill_size=16,
                **ENGINE_DEFAULTS) as engine:
        outs = engine.generate(prompts, SamplingParams(max_new_tokens=NEW, temperature=0,
                                                       ignore_eos=True))
    assert [o.outputs[0].token_ids for o in outs] == expected


def test_retraction_under_memory_pressure_keeps_outputs(model_dir, refs):
    """A KV pool too small for the whole batch forces retraction; nothing is lost and the
    greedy outputs stay identical."""
    prompts, expected, _ = refs("llama")
    # llama tiny: 2 layers * 2 kv heads * 16 dims * (k+v) * 4 bytes = 512 bytes per token
    # no output reserve at admission (schedule_conservativeness=0): admitted on their prompts,
    # the requests outgrow the pool
    with Engine(str(model_dir("llama")), page_size=8, kv_cache_bytes=512 * 8 * 30,
                schedule_conservativeness=0,
                **ENGINE_DEFAULTS) as engine:
        outs = engine.generate(prompts, SamplingParams(max_new_tokens=NEW, temperature=0,
                                                       ignore_eos=True))
        stats = engine.stats()
        engine.check_invariants()
    assert stats.retractions > 0
    assert [o.outputs[0].token_ids for o in outs] == expected


def test_output_reserve_cuts_retractions_and_keeps_outputs(model_dir, refs):
    """The same pool with the default output reserve at admission: fewer requests run at once,
    fewer are retracted, and the greedy outputs are the same tokens."""
    prompts, expected, _ = refs("llama")
    seen = {}
    for c in (0.0, 1.0):
        with Engine(str(model_dir("llama")), page_size=8, kv_cache_bytes=512 * 8 * 30,
                    schedule_conservativeness=c, **ENGINE_DEFAULTS) as engine:
            outs = engine.generate(prompts, SamplingParams(max_new_tokens=NEW, temperature=0,
                                                           ignore_eos=True))
            seen[c] = engine.stats().retractions
            engine.check_invariants()
        assert [o.outputs[0].token_ids for o in outs] == expected
    assert seen[1.0] < seen[0.0], seen
