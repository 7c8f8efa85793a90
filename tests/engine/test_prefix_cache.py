"""The radix prefix cache changes nothing but speed: greedy outputs with it equal outputs
without it (shared-prefix batches, chunked prefill, memory pressure), and reuse is reported."""

import pytest
from anyware import Engine, SamplingParams

from tests.engine.conftest import ENGINE_DEFAULTS
from tests.engine.tiny_models import random_prompts

P = SamplingParams(max_new_tokens=12, temperature=0, ignore_eos=True)


def shared_prefix_prompts(groups=3, per_group=4, prefix=48, question=9):
    prefixes = random_prompts([prefix] * groups, seed=21)
    questions = random_prompts([question] * (groups * per_group), seed=22)
    # interleaved: each batch of `groups` prompts holds one prompt of every group
    return [prefixes[i % groups] + q for i, q in enumerate(questions)]


def run(model, prompts, batches=1, **kw):
    opts = {**ENGINE_DEFAULTS, "page_size": 8, **kw}
    with Engine(str(model), **opts) as engine:
        outs = []
        size = -(-len(prompts) // batches)
        for i in range(0, len(prompts), size):  # later batches hit what earlier ones cached
            outs += engine.generate(prompts[i : i + size], P)
        stats = engine.stats()
        engine.check_invariants()
    return [o.outputs[0].token_ids for o in outs], outs, stats


@pytest.mark.parametrize("chunk", [2048, 16])
def test_shared_prefix_outputs_identical_with_and_without_cache(model_dir, chunk):
    model = model_dir("llama")
    prompts = shared_prefix_prompts()
    off, _, off_stats = run(model, prompts, batches=4, disable_radix_cache=True,
                            chunked_prefill_size=chunk)
    on, outs, on_stats = run(model, prompts, batches=4, chunked_prefill_size=chunk)
    assert on == off
    assert off_stats.cached_prompt_tokens == 0
    assert on_stats.cached_prompt_tokens >= 9 * 40  # batches 2-4 reuse the 48-token prefixes
    assert sum(o.usage.cached_tokens for o in outs) == on_stats.cached_prompt_tokens
    assert all(o.usage.cached_tokens % 8 == 0 for o in outs)  # whole pages only


def test_cache_under_memory_pressure_evicts_and_stays_identical(model_dir):
    model = model_dir("qwen2")
    prompts = shared_prefix_prompts(groups=4, per_group=3, prefix=40)
    off, _, _ = run(model, prompts, batches=3, disable_radix_cache=True)
    # ~20 pages of 8 tokens: enough for two requests at a time, so the cache must evict
    budget = 2 * 2 * 16 * 2 * 4 * 8 * 21  # layers * kv heads * head_dim * (k,v) * fp32 * page
    on, _, stats = run(model, prompts, batches=3, kv_cache_bytes=budget)
    assert on == off
    assert stats.evicted_pages > 0


def test_cache_salt_isolates_tenants(model_dir):
    model = model_dir("llama")
    prompt = shared_prefix_prompts(groups=1, per_group=1)[0]
    with Engine(str(model), page_size=8, **ENGINE_DEFAULTS) as engine:
        engine.generate([prompt], SamplingParams(max_new_tokens=2, cache_salt="tenant-a"))
        same = engine.generate([prompt], SamplingParams(max_new_tokens=2, cache_salt="tenant-a"))
        other = engine.generate([prompt], SamplingParams(max_new_tokens=2, cache_salt="tenant-b"))
    assert same[0].usage.cached_tokens > 0
    assert other[0].usage.cached_tokens == 0
