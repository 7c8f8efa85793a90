"""Engine-level accuracy of FP8 (e4m3) against the same run without it, on the shipped demo
model and a tiny random Llama, 4 prompts x 32 greedy tokens, in bf16 and fp32 (CPU platform,
torch reference ops): an fp8 KV cache (``kv_cache_dtype="fp8"``, scale 1.0), W8A8 fp8 linear
layers (``quantization="fp8"``: weights per output channel, activations per token), and both.

Drift: ``|logprob_fp8 - logprob_base|`` of the chosen tokens (a) scored teacher-forced on the
base run's own sequences (every position compares the same token after the same context) and
(b) along greedy decoding up to the first token where the runs part. Measured values are in
docs/quantization.md (largest: fp8 KV max 0.127 / mean 0.019; fp8 linear or both max 0.379 /
mean 0.060); ``BOUNDS`` leaves about 2x. Greedy tokens: where the runs part, the base run's
own top-8 logprobs there must show a near tie (the fp8 token within 2 x the max drift of the
base token); the demo model keeps all 32 tokens in at least ``DEMO_KEPT`` of the 4 prompts; the tiny
random model's near-tied logits part after 0 to 27 tokens."""

from __future__ import annotations

import pytest
from anyware import Engine, SamplingParams
from anyware.engine.config import DEMO_MODEL

from tests.engine.conftest import ENGINE_DEFAULTS
from tests.engine.tiny_models import random_prompts

NEW = 32
# (max drift of any one token, mean drift) in nats: about 2x the largest measured (docs/
# quantization.md); W8A8 quantises every projection's input and weight, so it drifts more
# than the KV cache alone
BOUNDS = {"kv": (0.25, 0.05), "linear": (0.75, 0.12), "both": (0.75, 0.12)}
# greedy prompts of the demo model that must keep all 32 tokens. Its random logits are near
# flat, so where the runs part depends on the CPU's bf16 matmul kernels as much as on fp8:
# fp8 KV kept 3-4 of 4 on session 8's CI machine and 2 of 4 on an AMD EPYC (session 9), fp8
# linear layers 1-3 of 4. Every parting is checked to be a near tie of the base run above;
# this only asks that fp8 does not derail every prompt.
DEMO_KEPT = {"kv": 1, "linear": 1, "both": 1}

VARIANTS = {"kv": {"kv_cache_dtype": "fp8"}, "linear": {"quantization": "fp8"},
            "both": {"kv_cache_dtype": "fp8", "quantization": "fp8"}}


def _run(model: str, dtype: str, fp8: dict, prompts):
    cfg = {**ENGINE_DEFAULTS, "dtype": dtype, **fp8}
    greedy = SamplingParams(max_new_tokens=NEW, temperature=0, ignore_eos=True, logprobs=8)
    with Engine(model, page_size=4, **cfg) as engine:
        outs = [o.outputs[0] for o in engine.generate(prompts, greedy)]
        engine.check_invariants()
    return [o.token_ids for o in outs], [o.logprobs for o in outs]


def _score(model: str, dtype: str, fp8: dict, seqs):
    cfg = {**ENGINE_DEFAULTS, "dtype": dtype, **fp8}
    with Engine(model, page_size=4, **cfg) as engine:
        outs = engine.generate(seqs, SamplingParams(max_new_tokens=0, prompt_logprobs=0))
    return [[x.logprob for x in o.prompt_logprobs[1:]] for o in outs]


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
@pytest.mark.parametrize("which", ["demo", "tiny"])
def test_fp8_logprob_drift(model_dir, which, dtype, variant):
    fp8 = VARIANTS[variant]
    max_drift, mean_drift = BOUNDS[variant]
    model = DEMO_MODEL if which == "demo" else str(model_dir("llama"))
    vocab = 4096 if which == "demo" else 300
    prompts = random_prompts((7, 19, 33, 12), vocab_size=vocab, seed=5)
    base_tok, base_lp = _run(model, dtype, {}, prompts)
    fp8_tok, fp8_lp = _run(model, dtype, fp8, prompts)
    seqs = [p + t for p, t in zip(prompts, base_tok)]
    base_tf = _score(model, dtype, {}, seqs)
    fp8_tf = _score(model, dtype, fp8, seqs)

    drift, common = [], []
    for p, a, b in zip(prompts, base_tf, fp8_tf):  # teacher-forced: the generated positions
        drift += [abs(x - y) for x, y in zip(a[len(p) - 1:], b[len(p) - 1:])]
    for ta, tb, la, lb in zip(base_tok, fp8_tok, base_lp, fp8_lp):  # decode, until they part
        n = next((i for i, (x, y) in enumerate(zip(ta, tb)) if x != y), NEW)
        common.append(n)
        drift += [abs(x.logprob - y.logprob) for x, y in zip(la[:n], lb[:n])]
        if n < NEW:  # they part only at a near tie of the base run
            top = dict(la[n].top)
            assert tb[n] in top and top[ta[n]] - top[tb[n]] <= 2 * max_drift, (n, la[n], lb[n])
    mean = sum(drift) / len(drift)
    print(f"{variant} {which} {dtype}: max drift {max(drift):.4f} mean {mean:.5f} over {len(drift)} "
          f"tokens; identical greedy prefix {common}/{NEW}")
    assert len(drift) >= 4 * NEW
    assert max(drift) <= max_drift and mean <= mean_drift
    if which == "demo":
        assert sum(n == NEW for n in common) >= DEMO_KEPT[variant]
    assert mean > 0  # fp8 really ran: the model dtype throughout drifts by exactly 0
