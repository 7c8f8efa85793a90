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
