"""fp8 W8A8 experts on the Triton fused-MoE backend vs the reference fp8 backend (the oracle)
on the same e4m3 weights and scales (CPU: Triton interpreter, small shapes).

Tolerance, elementwise ``|out - ref| <= ATOL + RTOL[dtype] * |ref|`` (outputs ~ N(0, 1)):
the row quantiser is bit-exact and the e4m3 products are exact in fp32, so in fp32 only the
summation order differs (measured <= 3e-7). In bf16 the SiLU-mul intermediate is rounded to
bf16 on both sides from fp32 values that differ in the last bits, so an intermediate may be
one bf16 ulp apart and, rarely, re-quantise one e4m3 step apart: one step of the row's amax /
14 times one w2 weight (~ I^-1/2) moves an output by up to ~0.05; plus the output's own bf16
rounding (rtol 2^-7). Measured max |diff| 0.043 (bf16, values up to ~2)."""

from __future__ import annotations

import pytest
import torch
from anyware.kernels.reference import ReferenceMoEBackend, quantize_experts_fp8
from anyware.kernels.triton.moe_backend import TritonMoEBackend
from anyware.plugin import MoESpec, MoEWeightLayout

ATOL = {torch.float32: 1e-5, torch.bfloat16: 6e-2}
RTOL = {torch.float32: 1e-5, torch.bfloat16: 8e-3}
CASES = {  # tokens, hidden, intermediate, experts, top_k
    "e8-k2-t9": (9, 64, 48, 8, 2),
    "e4-k1-t9-uneven": (9, 32, 40, 4, 1),  # expert 0 takes most rows, others none
    "e16-k2-t1": (1, 32, 32, 16, 2),  # decode: 14 of 16 experts empty
    "e4-k2-t1": (1, 48, 40, 4, 2),
}


def _close(out, want, dtype):
    assert out.dtype == dtype and out.shape == want.shape
    o, w = out.double(), want.double()
    bad = (o - w).abs() > ATOL[dtype] + RTOL[dtype] * w.abs()
    assert not bad.any(), f"max |diff| {(o - w).abs().max():.3g}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", list(CASES))
def test_triton_fp8_experts_match_reference(device, case, dtype):
    t, h, inter, e, k = CASES[case]
    spec = MoESpec(e, k, h, inter, dtype, quantization="fp8")
    triton_be, ref_be = TritonMoEBackend(None, spec), ReferenceMoEBackend(None, spec)
    gate, up = torch.randn(e, inter, h) * h**-0.5, torch.randn(e, inter, h) * h**-0.5
    down = torch.randn(e, h, inter) * inter**-0.5
    w13, w2 = MoEWeightLayout().pack(gate.to(dtype), up.to(dtype), down.to(dtype), spec)
    q13, q2, scales = quantize_experts_fp8(w13, w2)
    x = torch.randn(t, h).to(dtype)
    logits = torch.randn(t, e) * 2
    if case.endswith("uneven"):
        logits[:, 0] += 4.0
    want = ref_be.forward(x, logits, q13, q2, scales)
    dev = lambda z: z.to(device)  # noqa: E731
    dscales = tuple(map(dev, scales))
    out = triton_be.forward(dev(x), dev(logits), dev(q13), dev(q2), dscales)
    _close(out.cpu(), want, dtype)
    # the stage path: experts on dispatched rows, unweighted
    weights, ids = ref_be.route(logits)
    d = ref_be.dispatch(x, weights, ids)
    rows_ref = ref_be.experts(d, q13, q2, scales)
    dd = triton_be.dispatch(dev(x), dev(weights), dev(ids))
    rows = triton_be.experts(dd, dev(q13), dev(q2), dscales)
    _close(rows.cpu(), rows_ref, dtype)
    assert triton_be.calls["forward"] == 1 and triton_be.calls["experts"] == 1


def test_padded_fp8_layout_and_spec_gating():
    """Padding rows are zero with the floor scale and change nothing; a backend without fp8
    refuses the spec."""
    spec = MoESpec(4, 2, 32, 40, torch.float32, quantization="fp8")
    gate, up = torch.randn(4, 40, 32), torch.randn(4, 40, 32)
    down = torch.randn(4, 32, 40)
    w13, w2 = MoEWeightLayout(intermediate_multiple=64).pack(gate, up, down, spec)
    q13, q2, (s13, s2) = quantize_experts_fp8(w13, w2)
    assert q13.dtype == torch.float8_e4m3fn and s13.shape == (4, 128) and s2.shape == (4, 32)
    assert (q13[:, 40:64].float() == 0).all() and (s13[:, 40:64] == 1e-12 / 448).all()
    x, logits = torch.randn(5, 32), torch.randn(5, 4)
    dense = MoEWeightLayout().pack(gate, up, down, spec)
    qd13, qd2, sd = quantize_experts_fp8(*dense)
    ref_be = ReferenceMoEBackend(None, spec)
    torch.testing.assert_close(ref_be.forward(x, logits, q13, q2, (s13, s2)),
                               ref_be.forward(x, logits, qd13, qd2, sd), rtol=1e-6, atol=1e-6)

    class NoFp8(ReferenceMoEBackend):
        quantizations = frozenset()

    assert NoFp8.unsupported(spec) == "no fp8 experts"
    assert TritonMoEBackend.unsupported(spec) is None
    with pytest.raises(ValueError, match="quantization"):
        MoESpec(4, 2, 32, 40, torch.float32, quantization="int4")
