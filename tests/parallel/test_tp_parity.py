"""TP=2 greedy output is token-identical to TP=1 (fp32, gloo CPU ranks)."""

from __future__ import annotations

import pytest
from anyware import Engine, SamplingParams

from tests.parallel.conftest import ENGINE

PROMPTS = [[5, 6, 7, 8, 9], [10, 11, 12], list(range(20, 80)), [3] * 17]
PARAMS = SamplingParams(max_new_tokens=10, temperature=0.0)


def _local_experts(engine) -> set[int]:
    from anyware.model.moe import FusedExperts

    return {m.spec.num_local_experts for m in engine.core.worker.model.modules()
            if isinstance(m, FusedExperts)}


def _greedy(path, **options) -> list[list[int]]:
    engine = Engine(str(path), **{**ENGINE, **options})
    try:
        if options.get("enable_expert_parallel"):  # rank 0 really holds half the experts
            experts = engine.model_config.num_experts
            assert _local_experts(engine) == {experts // 2}, _local_experts(engine)
        together = [o.outputs[0].token_ids for o in engine.generate(PROMPTS, PARAMS)]
        # one request alone: a decode step has one token, fewer than ranks (under expert
        # parallelism rank 1 routes an empty chunk)
        alone = engine.generate([PROMPTS[0]], PARAMS)[0].outputs[0].token_ids
        return [*together, alone]
    finally:
        engine.shutdown()


@pytest.mark.parametrize("name, options", [
    ("llama", {"overlap_schedule": True}),  # overlap: tokens in flight reach rank 1 by broadcast
    ("qwen2-kv1", {}),  # tied embeddings; one KV head < 2 ranks: replicated
    ("qwen3", {"chunked_prefill_size": 16}),  # q/k norm; prompts prefilled in chunks
    ("qwen3-moe", {}),  # experts split along their intermediate dimension
    ("qwen3-moe", {"enable_expert_parallel": True}),  # whole experts per rank, all-to-all
], ids=["llama-overlap", "qwen2-kv1-tied", "qwen3-chunked", "qwen3-moe-tp", "qwen3-moe-ep"])
def test_tp2_matches_tp1(model_dir, name, options):
    path = model_dir(name)
    reference = _greedy(path, **{k: v for k, v in options.items()
                                 if k != "enable_expert_parallel"})
    assert _greedy(path, tensor_parallel_size=2, **options) == reference


def _prompt_logprobs(path, **options) -> list[float]:
    engine = Engine(str(path), **{**ENGINE, **options})
    try:
        outs = engine.generate(PROMPTS, SamplingParams(max_new_tokens=0, prompt_logprobs=0))
        return [x.logprob for o in outs for x in o.prompt_logprobs[1:]]
    finally:
        engine.shutdown()


def test_tp2_fp8_linear_layers(model_dir):
    """W8A8 under TP: every rank quantises its own shard. Column-parallel shards keep TP=1's
    per-channel scales; a row-parallel shard's scales (and its activations' per-token scales)
    cover the rank's half of the input features, so TP=2 is not bit-identical to TP=1 -- the
    teacher-forced logprobs agree within the fp8 drift (measured: max 0.112 nats between TP=2
    and TP=1, 0.143 between fp8 and fp32 at TP=1)."""
    path = model_dir("llama")
    one = _prompt_logprobs(path, quantization="fp8")
    two = _prompt_logprobs(path, quantization="fp8", tensor_parallel_size=2)
    base = _prompt_logprobs(path)
    drift = max(abs(a - b) for a, b in zip(one, two))
    print(f"tp2 vs tp1 fp8 max drift {drift:.4f}; fp8 vs base "
          f"{max(abs(a - b) for a, b in zip(one, base)):.4f}")
    assert len(one) == len(two) == sum(len(p) - 1 for p in PROMPTS)
    assert 0 < drift <= 0.25
