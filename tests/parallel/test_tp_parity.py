"""TP=2 greedy output is token-identical to TP=1 (fp32, gloo CPU ranks)."""

from __future__ import annotations

import pytest
from anyware import Engine, SamplingParams

from tests.parallel.conftest import ENGINE

PROMPTS = [[5, 6, 7, 8, 9], [10, 11, 12], list(range(20, 80)), [3] * 17]
PARAMS = SamplingParams(max_new_tokens=10, temperature=0.0)


def _greedy(path, **options) -> list[list[int]]:
    engine = Engine(str(path), **{**ENGINE, **options})
    try:
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
