"""The W8A8 fp8 linear layer of the Triton ops: the per-token quantisation kernel gives the
reference's bytes and scales exactly (zero rows, values past e4m3's range, subnormals), and
``TritonOps.fp8_linear`` (that kernel + ``torch._scaled_mm``) agrees with the reference to
the output dtype's rounding. CPU: the Triton interpreter (and torch's CPU ``_scaled_mm``)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed (pip install anyware[cuda])")

from anyware.kernels.reference import quant as ref
from anyware.kernels.triton import quant
from anyware.kernels.triton.ops import TritonOps

FP8 = torch.float8_e4m3fn
DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def _rows(t: int, k: int, dtype) -> torch.Tensor:
    """Rows spanning 1e-4 .. 1e4 in magnitude, an all-zero row and a few extreme values."""
    x = torch.randn(t, k) * torch.logspace(-4, 4, t)[:, None]
    x[1] = 0.0
    x[2, :4] = torch.tensor([3e4 if dtype != torch.float16 else 6e4, -1e-7, 2.0**-20, -0.0])
    x[3] = torch.randn(k) * 1e-3
    x[3, 0] = 500.0  # one outlier: the rest of the row lands in e4m3's subnormals
    return x.to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [48, 4100 + 28], ids=["k48", "k4128-two-pass"])
def test_quantize_rows_is_the_reference_bit_for_bit(device, dtype, k):
    x = _rows(9, k, dtype)
    q, s = quant.quantize_fp8_rows(x.to(device))
    q_ref, s_ref = ref.quantize_fp8_rows(x)
    assert q.dtype == FP8 and s.dtype == torch.float32 and q.shape == x.shape
    assert torch.equal(q.cpu().view(torch.uint8), q_ref.view(torch.uint8))
    assert torch.equal(s.cpu(), s_ref)
    assert float(s[1]) == pytest.approx(1e-12 / 448.0)  # the zero row: tiny scale, zero bytes
    assert not q[1].cpu().view(torch.uint8).any()


def test_quantize_rows_strided_and_empty(device):
    x = torch.randn(5, 96)
    q, s = quant.quantize_fp8_rows(x[:, ::2].to(device))  # non-contiguous last dim
    q_ref, s_ref = ref.quantize_fp8_rows(x[:, ::2])
    assert torch.equal(q.cpu().view(torch.uint8), q_ref.view(torch.uint8))
    assert torch.equal(s.cpu(), s_ref)
    q, s = quant.quantize_fp8_rows(torch.empty(0, 64, device=device))
    assert q.shape == (0, 64) and s.shape == (0,)


# output dtype's rounding (the operands are the same e4m3 values, accumulation is fp32)
RTOL = {torch.float32: 1e-5, torch.bfloat16: 8e-3, torch.float16: 1.5e-3}


def _atol(device) -> float:
    """Absolute error allowed, in units of the row's magnitude: the interpreter's fp32 sums,
    or cuBLASLt's fp8 GEMM on a GPU, whose tensor-core accumulation is not full fp32 on
    Hopper (the H200 in session 8: max 7.0e-4 with an fp32 output, 1.02e-3 with fp16, at
    K = 272). A 1% error in a scale is 5x past it with fp32 or fp16 outputs (bf16 rounds
    to 8e-3 itself)."""
    return 2e-3 if torch.device(device).type == "cuda" else 1e-4


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("t,n,k", [(1, 16, 32), (7, 48, 272)])
def test_fp8_linear_matches_reference(device, dtype, bias, t, n, k):
    mags = 2.0 ** torch.tensor([-10, 6, 0, -4, 3, -1, 2])[:t]
    x = (torch.randn(t, k) * mags[:, None]).to(dtype)
    w, ws = ref.quantize_fp8_rows(torch.randn(n, k) * k**-0.5)
    b = torch.randn(n).to(dtype) if bias else None
    ops = TritonOps()
    out = ops.fp8_linear(x.to(device), w.to(device), ws.to(device),
                         None if b is None else b.to(device))
    assert ops.calls["fp8_linear"] == 1
    assert out.dtype == dtype and out.shape == (t, n) and out.device.type == torch.device(device).type
    want = ref.fp8_linear(x.float(), w, ws, None if b is None else b.float()).double()
    unit = (mags.clamp_min(1.0) if bias else mags).double()[:, None]  # compare per-row units
    err = ((out.cpu().double() - want) / unit).abs()
    assert (err <= _atol(device) + RTOL[dtype] * (want / unit).abs()).all(), float(err.max())


def test_fp8_linear_no_tokens(device):
    w, ws = ref.quantize_fp8_rows(torch.randn(32, 64))
    out = TritonOps().fp8_linear(torch.empty(0, 64, dtype=torch.bfloat16, device=device),
                                 w.to(device), ws.to(device))
    assert out.shape == (0, 32) and out.dtype == torch.bfloat16



@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("t,n,k", [(1, 40, 48), (2, 48, 272), (3, 17, 1100), (4, 600, 24)],
                         ids=["t1", "t2", "t3-five-chunks", "t4-wide"])
def test_fp8_gemv_matches_reference(device, dtype, t, n, k):
    """The opt-in few-rows kernel (``TritonOps(fp8_gemv_max_rows=4)``): the reference's
    quantisation inside, fp32 sums, rows 15 binades apart, a bias, ragged N and K (masked
    tails), strided rows; each row's scale is its own."""
    mags = 2.0 ** torch.tensor([-8, 7, 0, -3])[:t]
    base = torch.randn(t, 2 * k) * mags[:, None]
    x = (base[:, ::2] if t % 2 else base[:, :k]).to(dtype)  # odd t: a strided last dim
    w, ws = ref.quantize_fp8_rows(torch.randn(n, k) * k**-0.5)
    b = torch.randn(n).to(dtype)
    ops = TritonOps(fp8_gemv_max_rows=4)
    dev = lambda a: a.to(device)  # noqa: E731
    out = ops.fp8_linear(dev(x), dev(w), dev(ws), dev(b))
    want = ref.fp8_linear(x.float(), w, ws, b.float()).double()
    unit = mags.clamp_min(1.0).double()[:, None]
    err = ((out.cpu().double() - want) / unit).abs()
    assert out.dtype == dtype and out.shape == (t, n) and ops.calls["fp8_linear"] == 1
    assert (err <= 1e-4 + RTOL[dtype] * (want / unit).abs()).all(), float(err.max())
    if t >= 2:  # a 64x larger row 1 (fp16 holds it) leaves row 0's bytes alone
        x2 = x.clone()
        x2[1] = x2[1] * 64
        assert torch.equal(ops.fp8_linear(dev(x2), dev(w), dev(ws), dev(b))[0].cpu(), out[0].cpu())


def test_fp8_gemv_only_below_its_row_limit(device, monkeypatch):
    """``fp8_gemv_max_rows`` decides: 0 (the default) never, N up to N rows, then _scaled_mm."""
    from anyware.kernels.triton import fp8_gemv

    used = []
    real = fp8_gemv.fp8_gemv
    monkeypatch.setattr(fp8_gemv, "fp8_gemv", lambda *a, **kw: used.append(a[0].shape[0]) or real(*a, **kw))
    w, ws = ref.quantize_fp8_rows(torch.randn(16, 32))
    for max_rows, rows in ((0, 1), (2, 2), (2, 3)):
        TritonOps(fp8_gemv_max_rows=max_rows).fp8_linear(
            torch.randn(rows, 32, device=device), w.to(device), ws.to(device))
    assert used == [2]
