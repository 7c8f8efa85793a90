"""The engine on the tpu platform (JAX CPU backend): greedy output token-identical to
transformers (fp32), and a steady-state run that compiles nothing after warm-up."""

import pytest
from anyware import Engine, SamplingParams

from tests.engine.tiny_models import hf_greedy, random_prompts

LENGTHS = (5, 17, 40, 9)
NEW = 12
# small buckets: T in {8..64}, B in {1..4}; the prefill chunk keeps every step inside them
TPU = dict(platform="tpu", dtype="float32", debug_invariants=True, show_progress=False,
           max_running_requests=4, chunked_prefill_size=32, page_size=16, context_len=128)


@pytest.fixture(scope="module")
def tpu_engine(model_dir):
    with Engine(str(model_dir("llama")), **TPU) as engine:
        yield engine


def _strategy(engine):
    return engine.core.worker.strategy


@pytest.mark.slow
def test_greedy_matches_transformers_and_never_recompiles(tpu_engine, model_dir):
    prompts = random_prompts(LENGTHS)
    expected, _ = hf_greedy(model_dir("llama"), prompts, NEW)
    strategy = _strategy(tpu_engine)
    warmed = strategy.compilations
    assert warmed == len(strategy.options.all()), "warm-up compiles every bucket once"
    params = SamplingParams(max_new_tokens=NEW, temperature=0, ignore_eos=True)
    outs = tpu_engine.generate(prompts, params)
    tpu_engine.check_invariants()
    assert [o.outputs[0].token_ids for o in outs] == expected
    again = tpu_engine.generate(prompts[:2], params)  # reuses the prefix cache
    assert [o.outputs[0].token_ids for o in again] == expected[:2]
    assert strategy.compilations == warmed, "the serving loop compiled a new program"


@pytest.mark.slow
def test_seeded_sampling_in_the_step_matches_cpu(tpu_engine, model_dir):
    """Temperature / top-k / top-p / min-p drawn inside the compiled step (only ids and
    logprobs leave it) give the cpu platform's tokens: same counter-based noise."""
    prompts = random_prompts(LENGTHS[:3], seed=7)
    params = [SamplingParams(max_new_tokens=8, temperature=0.9, top_k=k, top_p=p, min_p=m,
                             seed=11 + i, ignore_eos=True, logprobs=0)
              for i, (k, p, m) in enumerate([(-1, 1.0, 0.0), (20, 0.9, 0.0), (-1, 0.8, 0.05)])]
    strategy = _strategy(tpu_engine)
    calls = []
    real = strategy.run_and_sample
    strategy.run_and_sample = lambda b, s: calls.append(1) or real(b, s)
    try:
        got = tpu_engine.generate(prompts, params)
    finally:
        del strategy.run_and_sample
    assert calls, "the step was not sampled inside the compiled program"
    cpu = dict(TPU, platform="cpu")
    with Engine(str(model_dir("llama")), **cpu) as ref_engine:
        want = ref_engine.generate(prompts, params)
    for g, w in zip(got, want):
        assert g.outputs[0].token_ids == w.outputs[0].token_ids
        lp_g = [t.logprob for t in g.outputs[0].logprobs]
        lp_w = [t.logprob for t in w.outputs[0].logprobs]
        assert lp_g == pytest.approx(lp_w, abs=1e-4)


@pytest.mark.slow
def test_moe_model_greedy_matches_transformers(model_dir):
    """A Qwen3-MoE model on the tpu platform: every MoE layer runs the JAX backend (sorted
    grouped matmul) inside the compiled step; greedy tokens equal transformers' (fp32)."""
    prompts = random_prompts((6, 20), seed=3)
    expected, _ = hf_greedy(model_dir("qwen3-moe"), prompts, 8)
    cfg = dict(TPU, max_running_requests=1, chunked_prefill_size=16, context_len=64)
    with Engine(str(model_dir("qwen3-moe")), **cfg) as engine:
        backends = {type(m.backend).__name__ for m in engine.core.worker.model.modules()
                    if hasattr(m, "backend") and hasattr(m.backend, "calls")}
        outs = engine.generate(prompts, SamplingParams(max_new_tokens=8, temperature=0,
                                                       ignore_eos=True))
    assert backends == {"JaxMoEBackend"}
    assert [o.outputs[0].token_ids for o in outs] == expected


def test_eagle3_with_compiled_execution_is_refused_with_the_way_out(model_dir, tmp_path):
    """EAGLE-3's features are written in place inside the target's forward, which a compiled
    (functional) program does not keep: a start-up error naming --execution eager, never a
    silent wrong draft (the conformance engine tier runs EAGLE-3 on tpu eagerly)."""
    from anyware.plugin import CapabilityError

    from tests.engine.eagle3_heads import random_head

    head = random_head(tmp_path / "head")
    with pytest.raises(CapabilityError, match="--execution eager"):
        Engine(str(model_dir("llama")), **TPU, execution="compiled",
               speculative_algorithm="eagle3", speculative_draft_model=str(head))
