"""fp8 W8A8 MoE experts (``quantization="fp8"`` on a MoE model, CPU platform, the reference
MoE backend): the experts really are e4m3 with per-row scales, greedy generation works, and
the teacher-forced logprob drift against the unquantised model is bounded; a platform whose
MoE backends do not run fp8 experts keeps them in the model dtype with one warning.

Drift: ``|logprob_fp8 - logprob_base|`` of each prompt token after the first, scored
teacher-forced (same context, same token). With ``quantization="fp8"`` the dense projections
are W8A8 too, so the drift is the whole model's; measured values are in docs/quantization.md
("fp8 MoE experts"); ``BOUNDS`` leaves about 2x."""

from __future__ import annotations

import logging

import pytest
import torch
from anyware import Engine, SamplingParams
from anyware.kernels.reference import ReferenceMoEBackend
from anyware.model.moe import FusedExperts, SparseMoeBlock

from tests.engine.conftest import ENGINE_DEFAULTS
from tests.engine.tiny_models import random_prompts

PROMPTS = random_prompts((7, 19, 33, 12), seed=5)
NEW = 8
# (max drift of any one token, mean drift) in nats, fp32 model: about 2x the measured (max
# 0.126-0.231, mean 0.036-0.038; experts alone move logprobs by max 0.067, mean 0.015)
BOUNDS = {"qwen3-moe": (0.45, 0.08), "mixtral": (0.45, 0.08)}


def _run(path, **kw):
    """(greedy tokens, teacher-forced logprobs of prompt + greedy tokens, experts, blocks)."""
    with Engine(str(path), **{**ENGINE_DEFAULTS, "page_size": 4, **kw}) as engine:
        greedy = SamplingParams(max_new_tokens=NEW, temperature=0, ignore_eos=True)
        toks = [o.outputs[0].token_ids for o in engine.generate(PROMPTS, greedy)]
        engine.check_invariants()
        model = engine.core.worker.model
        experts = [m for m in model.modules() if isinstance(m, FusedExperts)]
        blocks = [m for m in model.modules() if isinstance(m, SparseMoeBlock)]
        info = [(e.w13.dtype, e.w2.dtype, e.scales()) for e in experts]
        fallbacks = [b.fp8_fallback for b in blocks]
    return toks, info, fallbacks


def _score(path, seqs, **kw):
    with Engine(str(path), **{**ENGINE_DEFAULTS, "page_size": 4, **kw}) as engine:
        outs = engine.generate(seqs, SamplingParams(max_new_tokens=0, prompt_logprobs=0))
    return [x.logprob for o in outs for x in o.prompt_logprobs[1:]]


@pytest.mark.parametrize("arch", list(BOUNDS))
def test_fp8_experts_quantised_and_drift_bounded(model_dir, arch):
    path = model_dir(arch)
    toks, info, fallbacks = _run(path, quantization="fp8")
    assert info and not any(fallbacks)
    for w13_dtype, w2_dtype, scales in info:
        assert w13_dtype == w2_dtype == torch.float8_e4m3fn
        assert scales is not None and all(s.dtype == torch.float32 for s in scales)
    assert all(len(t) == NEW for t in toks)
    seqs = [p + t for p, t in zip(PROMPTS, toks)]
    base, fp8 = _score(path, seqs), _score(path, seqs, quantization="fp8")
    drift = [abs(a - b) for a, b in zip(base, fp8)]
    mean = sum(drift) / len(drift)
    print(f"{arch} fp8 (experts + linear) vs fp32: max drift {max(drift):.4f} mean {mean:.5f} "
          f"over {len(drift)} tokens")
    max_bound, mean_bound = BOUNDS[arch]
    assert 0 < max(drift) <= max_bound and mean <= mean_bound


def test_no_fp8_moe_backend_falls_back_with_one_warning(model_dir, monkeypatch, caplog):
    """A platform whose MoE backends do not declare fp8: the experts stay in the model dtype
    (the dense layers are still W8A8) and the model logs one warning, not one per layer."""
    monkeypatch.setattr(ReferenceMoEBackend, "quantizations", frozenset())
    with caplog.at_level(logging.WARNING, logger="anyware.model.moe"):
        toks, info, fallbacks = _run(model_dir("qwen3-moe-k8"), quantization="fp8")
    assert all(len(t) == NEW for t in toks)
    assert info and all(d13 == d2 == torch.float32 and s is None for d13, d2, s in info)
    assert all(fallbacks)
    warnings = [r for r in caplog.records if "MoE experts stay in" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "no MoE backend of platform cpu runs fp8 experts" in warnings[0].getMessage()
