"""fp8 activations quantised in the op that produces them (``TritonOps.rms_norm_fp8``,
``fused_add_rms_norm_fp8``, ``silu_and_mul_fp8``): each fused launch gives the bytes and
scales of the unfused op followed by the per-token quantisation kernel, and ``fp8_linear``
multiplies the :class:`Fp8Rows` it gets exactly as it would have quantised the rows itself.
CPU: the Triton interpreter (and torch's CPU ``_scaled_mm``)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed (pip install anyware[cuda])")

from anyware.kernels.reference import quant as ref
from anyware.kernels.triton import activation, norm, quant
from anyware.kernels.triton.ops import TritonOps
from anyware.plugin import Fp8Rows

from tests.engine.conftest import model_dir  # noqa: F401 - the fixture
from tests.kernels.conftest import HAS_GPU

FP8 = torch.float8_e4m3fn
DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def _same(rows: Fp8Rows, q: torch.Tensor, s: torch.Tensor, dtype) -> None:
    assert isinstance(rows, Fp8Rows) and rows.dtype == dtype
    assert rows.data.dtype == FP8 and rows.scale.dtype == torch.float32
    assert rows.data.shape == q.shape and rows.scale.shape == s.shape
    assert torch.equal(rows.data.cpu().view(torch.uint8), q.cpu().view(torch.uint8))
    assert torch.equal(rows.scale.cpu(), s.cpu())


def _x(t: int, h: int, dtype, device) -> torch.Tensor:
    """Rows four decades apart, and an all-zero row (its scale is the tiny 1e-12 / 448)."""
    x = torch.randn(t, h) * torch.logspace(-2, 2, t)[:, None]
    x[min(1, t - 1)] = 0.0
    return x.to(dtype).to(device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("h", [64, 1000])
def test_rms_norm_fp8_is_norm_then_quantise(device, dtype, h):
    x = _x(5, h, dtype, device)
    w = (torch.randn(h) * 0.5 + 1).to(dtype).to(device)
    _same(norm.rms_norm_fp8(x, w, 1e-6), *quant.quantize_fp8_rows(norm.rms_norm(x, w, 1e-6)),
          dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_add_rms_norm_fp8_is_add_norm_then_quantise(device, dtype):
    x, res = _x(6, 256, dtype, device), _x(6, 256, dtype, device)
    w = (torch.randn(256) * 0.5 + 1).to(dtype).to(device)
    rows, r = norm.fused_add_rms_norm_fp8(x, res, w, 1e-5)
    normed, r_want = norm.fused_add_rms_norm(x, res, w, 1e-5)
    _same(rows, *quant.quantize_fp8_rows(normed), dtype)
    assert torch.equal(r, r_want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("inter", [48, 4096 + 272], ids=["i48", "i4368-two-pass"])
def test_silu_and_mul_fp8_is_silu_then_quantise(device, dtype, inter):
    base = torch.randn(4, 2 * inter + 16) * 3
    x = base[:, : 2 * inter].to(dtype).to(device)  # a strided row: the rows are 2I + 16 apart
    _same(activation.silu_and_mul_fp8(x), *quant.quantize_fp8_rows(activation.silu_and_mul(x)),
          dtype)


def test_producers_take_no_rows(device):
    w = torch.ones(64, device=device)
    assert norm.rms_norm_fp8(torch.empty(0, 64, device=device), w, 1e-6).data.shape == (0, 64)
    assert activation.silu_and_mul_fp8(torch.empty(0, 64, device=device)).scale.shape == (0,)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_fp8_linear_of_rows_is_fp8_linear_of_the_tensor(device, dtype):
    """A projection fed the rows of a fused norm computes what it computes when it quantises
    the norm's output itself, bit for bit; and the reference agrees on the rows too."""
    x = _x(7, 96, dtype, device)
    w_norm = (torch.randn(96) * 0.5 + 1).to(dtype).to(device)
    w, ws = ref.quantize_fp8_rows(torch.randn(48, 96) * 96**-0.5)
    w, ws = w.to(device), ws.to(device)
    bias = torch.randn(48).to(dtype).to(device)
    ops = TritonOps()
    assert ops.fp8_activations
    rows = ops.rms_norm_fp8(x, w_norm, 1e-6)
    fused = ops.fp8_linear(rows, w, ws, bias)
    unfused = ops.fp8_linear(ops.rms_norm(x, w_norm, 1e-6), w, ws, bias)
    assert fused.dtype == dtype and torch.equal(fused, unfused)
    assert ops.calls["rms_norm_fp8"] == 1 and ops.calls["fp8_linear"] == 2
    host = Fp8Rows(rows.data.cpu(), rows.scale.cpu(), rows.dtype)
    want = ref.fp8_linear(host, w.cpu(), ws.cpu(), bias.cpu())
    # on a GPU the product is cuBLASLt's, whose fp8 accumulation is not full fp32 (the bound
    # of test_triton_fp8_linear's ``_atol``: the rows here are of magnitude ~1)
    atol = 2e-3 if torch.device(device).type == "cuda" else 1e-4
    torch.testing.assert_close(fused.cpu().float(), want.float(), atol=atol,
                               rtol=8e-3 if dtype == torch.bfloat16 else 1e-5)


def test_few_rows_kernel_turns_the_producers_off():
    """The opt-in few-rows kernel quantises its own input: with it, the model keeps its norms
    and SiLU unquantised (``fp8_activations`` False)."""
    assert TritonOps().fp8_activations
    assert not TritonOps(fp8_gemv_max_rows=4).fp8_activations


@pytest.mark.skipif(HAS_GPU, reason="the CPU platform given the Triton ops runs them under "
                    "the interpreter, which is off where a GPU is visible")
@pytest.mark.parametrize("dtype", ["bfloat16"])
def test_engine_on_the_triton_ops_fused_equals_unfused(model_dir, monkeypatch, dtype):  # noqa: F811
    """End to end on the CPU platform given the Triton ops (the interpreter, and torch's CPU
    ``_scaled_mm``): a tiny Llama with ``--quantization fp8`` decodes the same tokens with the
    same logprobs whether its norms and SiLU quantise for their projections (the default)
    or each projection quantises its own input."""
    from anyware import Engine, SamplingParams
    from anyware_cpu.platform import CpuPlatform

    monkeypatch.setattr(CpuPlatform, "_create_ops", lambda self: TritonOps())
    params = SamplingParams(max_new_tokens=4, temperature=0, ignore_eos=True, logprobs=0)
    prompts = [[5, 6, 7, 8, 9], [11, 12, 13]]
    runs = {}
    for fused in (True, False):
        with Engine(str(model_dir("llama")), platform="cpu", dtype=dtype, quantization="fp8",
                    show_progress=False, overlap_schedule=False) as engine:
            ops = engine.core.platform.ops()
            producers = [m for m in engine.core.worker.model.modules()
                         if getattr(m, "fp8_out", False)]
            assert len(producers) == 2 * 3  # set at load: 2 layers x (2 norms, SiLU)
            for m in producers:
                m.fp8_out = fused
            outs = [o.outputs[0] for o in engine.generate(prompts, params)]
            runs[fused] = [(o.token_ids, [lp.logprob for lp in o.logprobs]) for o in outs]
            assert ops.calls["rms_norm_fp8" if fused else "rms_norm"] > 0
            assert (ops.calls["silu_and_mul_fp8"] > 0) is fused
    assert runs[True] == runs[False]
