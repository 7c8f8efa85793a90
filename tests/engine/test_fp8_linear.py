"""W8A8 FP8 linear layers (``quantization="fp8"``): which layers the loader quantises, that the
model then runs through the platform's ``fp8_linear``, and the clear errors around it.
Accuracy against the unquantised model: ``test_fp8_accuracy.py``."""

from __future__ import annotations

import json

import pytest
import torch
from anyware import Engine, SamplingParams
from anyware.engine.config import EngineConfig
from anyware.kernels.reference import ReferenceOps
from anyware.kernels.reference.quant import fp8_linear, quantize_fp8_rows
from anyware.model.config import ModelConfig, ModelConfigError
from anyware.model.layers import Linear
from anyware.model.quant import quantize_linears
from anyware.plugin import CapabilityError
from anyware.request import InvalidRequestError
from anyware_cpu.platform import CpuPlatform

from tests.engine.conftest import ENGINE_DEFAULTS


def test_quantize_fp8_rows_round_trip():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(48, 64, generator=gen) * torch.logspace(-3, 2, 48)[:, None]
    w[5] = 0
    q, s = quantize_fp8_rows(w)
    assert q.dtype == torch.float8_e4m3fn and s.dtype == torch.float32 and s.shape == (48,)
    assert torch.equal(q.float().abs().amax(1)[torch.arange(48) != 5], torch.full((47,), 448.0))
    back = q.float() * s[:, None]
    # e4m3 keeps 3 mantissa bits: each element within half a step (2^-4 relative) of its value,
    # or of the row's subnormal quantum
    assert ((back - w).abs() <= w.abs() * 2**-4 + s[:, None] * 2**-9 + 1e-30).all()
    assert torch.equal(back[5], torch.zeros(64))


def test_fp8_linear_reference_per_token_scales():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4, 128, generator=gen) * torch.tensor([1e-3, 1.0, 50.0, 0.0])[:, None]
    w = torch.randn(32, 128, generator=gen) * 0.02
    b = torch.randn(32, generator=gen)
    wq, ws = quantize_fp8_rows(w)
    y = fp8_linear(x, wq, ws, b)
    exact = x @ w.T + b
    err = (y - exact).norm(dim=1) / (x @ w.T).norm(dim=1).clamp_min(1e-30)
    assert (err[:3] < 0.06).all(), err  # every row keeps its own precision, however small
    assert torch.equal(y[3], b)


def _linear(n: int, k: int, bias: bool) -> Linear:
    lin = Linear(k, n, bias, torch.float32)
    with torch.no_grad():
        lin.weight.normal_(0, 0.02)
        if bias:
            lin.bias.normal_()
    return lin


def test_quantize_linears_picks_the_projections():
    ops = ReferenceOps()
    model = torch.nn.Module()
    model.layer = torch.nn.Module()
    model.layer.qkv_proj = _linear(64, 32, True)
    model.layer.o_proj = _linear(32, 40, False)  # K = 40: not a multiple of 16
    model.layer.gate = _linear(32, 32, False)  # a router: not a projection
    model.lm_head = _linear(96, 32, False)
    x = torch.randn(3, 32)
    want = model.layer.qkv_proj(x)
    report = quantize_linears(model, "fp8", ops)
    assert report.quantized == 1 and report.kept == ("layer.o_proj",)
    assert report.bytes_before == 64 * 32 * 4 and report.bytes_after == 64 * 32 + 64 * 4
    assert model.layer.qkv_proj.weight.dtype == torch.float8_e4m3fn
    for name in ("o_proj", "gate"):
        assert getattr(model.layer, name).weight.dtype == torch.float32
    assert model.lm_head.weight.dtype == torch.float32
    got = model.layer.qkv_proj(x)
    assert ops.calls["fp8_linear"] == 1
    assert (got - want).norm() / want.norm() < 0.06
    with pytest.raises(ValueError, match="known: fp8"):
        quantize_linears(model, "int4", ops)


def test_engine_runs_the_fp8_linear_layers(model_dir):
    path = str(model_dir("llama"))
    greedy = SamplingParams(max_new_tokens=6, temperature=0, ignore_eos=True)
    with Engine(path, quantization="fp8", **ENGINE_DEFAULTS) as engine:
        model = engine.core.worker.model
        assert sum(isinstance(m, Linear) and m.weight.dtype == torch.float8_e4m3fn
                   for m in model.modules()) == 2 * 4  # 2 layers x qkv, o, gate_up, down
        before = engine.core.platform.ops().calls["fp8_linear"]
        out = engine.generate([[5, 6, 7, 8]], greedy)[0].outputs[0]
        assert len(out.token_ids) == 6
        assert engine.core.platform.ops().calls["fp8_linear"] > before


def test_bad_quantization_is_refused():
    with pytest.raises(InvalidRequestError, match="quantization 'int4'"):
        EngineConfig.from_kwargs(None, quantization="int4")


def test_platform_without_fp8_refuses_at_start_up(monkeypatch):
    from anyware.plugin import Capabilities

    plain = Capabilities(dtypes={torch.float32})
    monkeypatch.setattr(CpuPlatform, "_capabilities", lambda self: plain)
    with pytest.raises(CapabilityError, match=r"quantization 'fp8'.*leave --quantization unset"):
        Engine(None, quantization="fp8", **ENGINE_DEFAULTS)


def test_prequantized_checkpoint_is_refused(tmp_path):
    cfg = {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_attention_heads": 4,
           "num_hidden_layers": 1, "intermediate_size": 96, "vocab_size": 300,
           "quantization_config": {"quant_method": "fp8", "activation_scheme": "dynamic"}}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelConfigError, match=r"already quantized.*'fp8'.*--quantization fp8"):
        ModelConfig.from_dir(tmp_path)


def test_engine_quantises_in_the_producers(model_dir):
    """With ops that quantise activations in their producers (``fp8_activations``), each
    layer's two norms and its SiLU-and-mul hand their projection fp8 rows; the tokens are those
    of the same engine with every producer switched back to model-dtype output."""
    path = str(model_dir("llama"))
    greedy = SamplingParams(max_new_tokens=8, temperature=0, ignore_eos=True)
    prompts = [[5, 6, 7, 8], [9, 10, 11, 12, 13, 14]]
    with Engine(path, quantization="fp8", **ENGINE_DEFAULTS) as engine:
        model, ops = engine.core.worker.model, engine.core.platform.ops()
        producers = [m for m in model.modules() if getattr(m, "fp8_out", False)]
        assert len(producers) == 2 * 3  # 2 layers x (input norm, post-attention norm, MLP)
        assert not model.norm.fp8_out  # the final norm feeds the (unquantised) LM head
        before = ops.calls["quantize_fp8"]
        fused = [o.outputs[0].token_ids for o in engine.generate(prompts, greedy)]
        assert ops.calls["quantize_fp8"] > before
        for m in producers:
            m.fp8_out = False
        before = ops.calls["quantize_fp8"]
        plain = [o.outputs[0].token_ids for o in engine.generate(prompts, greedy)]
        assert ops.calls["quantize_fp8"] == before
    assert fused == plain


class _Block(torch.nn.Module):
    """A producer feeding one projection, as ``MLP.fp8_producers`` names it."""

    def __init__(self) -> None:
        super().__init__()
        self.down_proj = _linear(32, 64, False)
        self.fp8_out = False

    def fp8_producers(self):
        return [(self, self.down_proj)]


def test_producers_stay_off_without_fp8_activations():
    class Plain(ReferenceOps):
        fp8_activations = False

    for ops, want in ((Plain(), False), (ReferenceOps(), True)):
        block = _Block()
        report = quantize_linears(block, "fp8", ops)
        assert block.fp8_out is want and report.fused == int(want)
