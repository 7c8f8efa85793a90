"""RMSNorm and fused residual-add + RMSNorm (fp32 math, one program per row), optionally
quantised per token to e4m3 in the same launch for an fp8 projection (``*_fp8``)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from anyware.kernels.triton.pdl import gdc_enter, launch_options
from anyware.kernels.triton.quant import FP8_DTYPE, fp8_quantize, fp8_scale
from anyware.plugin import Fp8Rows


@triton.jit
def _rms_norm_kernel(
    x_ptr, r_ptr, w_ptr, out_ptr, rout_ptr, s_ptr,
    stride_x, stride_r, stride_o, stride_ro,
    N, eps,
    HAS_RESIDUAL: tl.constexpr, QUANT: tl.constexpr, BLOCK: tl.constexpr, GDC: tl.constexpr,
):
    gdc_enter(GDC)
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < N
    x = tl.load(x_ptr + row * stride_x + cols, mask=mask, other=0.0)
    if HAS_RESIDUAL:
        r = tl.load(r_ptr + row * stride_r + cols, mask=mask, other=0.0)
        # the sum is rounded to the input dtype first, as the reference does
        x = (x.to(tl.float32) + r.to(tl.float32)).to(x_ptr.dtype.element_ty)
        tl.store(rout_ptr + row * stride_ro + cols, x, mask=mask)
    xf = x.to(tl.float32)
    var = tl.sum(xf * xf, axis=0) / N
    w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    y = xf * tl.rsqrt(var + eps) * w
    if QUANT:  # rounded to the model dtype (the unfused norm's output), then e4m3 per row
        y = y.to(x_ptr.dtype.element_ty).to(tl.float32)
        scale = fp8_scale(tl.max(tl.abs(y), axis=0))
        y = fp8_quantize(y, scale)
        tl.store(s_ptr + row, scale)
    tl.store(out_ptr + row * stride_o + cols, y.to(out_ptr.dtype.element_ty), mask=mask)


def _launch(x, residual, weight, eps, quant: bool = False, pdl: bool = False):
    shape = x.shape
    x2 = x.reshape(-1, shape[-1])
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    n = x2.shape[-1]
    out = torch.empty((x2.shape[0], n), dtype=FP8_DTYPE if quant else x.dtype, device=x.device)
    scale = torch.empty((x2.shape[0] if quant else 0,), dtype=torch.float32, device=x.device)
    if residual is not None:
        r2 = residual.reshape(-1, n)
        if r2.stride(-1) != 1:
            r2 = r2.contiguous()
        rout = torch.empty_like(x2)
    else:
        r2, rout = x2, x2
    if x2.shape[0] > 0:
        block = triton.next_power_of_2(n)
        _rms_norm_kernel[(x2.shape[0],)](
            x2, r2, weight, out, rout, scale,
            x2.stride(0), r2.stride(0), out.stride(0), rout.stride(0),
            n, eps,
            HAS_RESIDUAL=residual is not None, QUANT=quant, BLOCK=block, GDC=pdl,
            num_warps=min(16, max(1, block // 256)), **launch_options(pdl),
        )
    if quant:
        return Fp8Rows(out, scale, x.dtype), rout.reshape(shape)
    return out.reshape(shape), rout.reshape(shape)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, *, pdl: bool = False
             ) -> torch.Tensor:
    """``x * rsqrt(mean(x^2) + eps) * weight`` over the last dim, fp32 math, ``x.dtype`` out.
    ``pdl``: launched with programmatic dependent launch (:mod:`.pdl`), here and below."""
    return _launch(x, None, weight, eps, pdl=pdl)[0]


def fused_add_rms_norm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float, *,
    pdl: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``r = x + residual`` (rounded to ``x.dtype``); returns ``(rms_norm(r), r)``."""
    return _launch(x, residual, weight, eps, pdl=pdl)


def rms_norm_fp8(x: torch.Tensor, weight: torch.Tensor, eps: float, *, pdl: bool = False
                 ) -> Fp8Rows:
    """``KernelOps.rms_norm_fp8`` in one launch: each normed row rounded to ``x.dtype``, then
    quantised per row exactly as ``quant.quantize_fp8_rows`` does. ``x`` ``[T, H]``."""
    return _launch(x, None, weight, eps, quant=True, pdl=pdl)[0]


def fused_add_rms_norm_fp8(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float, *,
    pdl: bool = False,
) -> tuple[Fp8Rows, torch.Tensor]:
    """``KernelOps.fused_add_rms_norm_fp8`` in one launch: ``(rms_norm_fp8(r), r)``."""
    return _launch(x, residual, weight, eps, quant=True, pdl=pdl)
