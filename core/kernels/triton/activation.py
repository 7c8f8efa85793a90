"""SiLU-and-mul: ``silu(x[:, :I]) * x[:, I:]`` in fp32, stored in the input dtype; or, for an
fp8 down projection (``silu_and_mul_fp8``), quantised per row to e4m3 in the same launch."""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from anyware.kernels.triton.pdl import gdc_enter, launch_options
from anyware.kernels.triton.quant import FP8_DTYPE, MAX_BLOCK, fp8_quantize, fp8_scale
from anyware.plugin import Fp8Rows


@triton.jit
def _silu_mul(x_row, cols, inter, mask):
    a = tl.load(x_row + cols, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(x_row + inter + cols, mask=mask, other=0.0).to(tl.float32)
    return a * tl.sigmoid(a) * b


@triton.jit
def _silu_and_mul_kernel(x_ptr, out_ptr, stride_x, stride_o, inter, BLOCK: tl.constexpr,
                         GDC: tl.constexpr):
    gdc_enter(GDC)
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < inter
    y = _silu_mul(x_ptr + row * stride_x, cols, inter, mask)
    tl.store(out_ptr + row * stride_o + cols, y.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _silu_and_mul_fp8_kernel(x_ptr, q_ptr, s_ptr, stride_x, stride_q, inter,
                             BLOCK: tl.constexpr, ONE_PASS: tl.constexpr, GDC: tl.constexpr):
    """One program per row: the product rounded to the input dtype (the unfused kernel's
    output), its absolute maximum, then each element quantised with the row's scale. A row
    longer than ``BLOCK`` is computed twice (amax pass, then quantise pass) rather than
    written out and read back."""
    gdc_enter(GDC)
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * stride_x
    q_row = q_ptr + row * stride_q
    cols = tl.arange(0, BLOCK)
    if ONE_PASS:
        mask = cols < inter
        y = _silu_mul(x_row, cols, inter, mask).to(x_ptr.dtype.element_ty).to(tl.float32)
        scale = fp8_scale(tl.max(tl.abs(y), axis=0))
        tl.store(q_row + cols, fp8_quantize(y, scale).to(q_ptr.dtype.element_ty), mask=mask)
    else:
        amax = tl.zeros([BLOCK], dtype=tl.float32)
        for c0 in range(0, inter, BLOCK):
            mask = c0 + cols < inter
            y = _silu_mul(x_row, c0 + cols, inter, mask).to(x_ptr.dtype.element_ty)
            amax = tl.maximum(amax, tl.abs(y.to(tl.float32)))
        scale = fp8_scale(tl.max(amax, axis=0))
        for c0 in range(0, inter, BLOCK):
            mask = c0 + cols < inter
            y = _silu_mul(x_row, c0 + cols, inter, mask).to(x_ptr.dtype.element_ty)
            q = fp8_quantize(y.to(tl.float32), scale)
            tl.store(q_row + c0 + cols, q.to(q_ptr.dtype.element_ty), mask=mask)
    tl.store(s_ptr + row, scale)


def _rows(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    x2 = x.reshape(-1, x.shape[-1])
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    return x2, x.shape[-1] // 2


def silu_and_mul(x: torch.Tensor, *, pdl: bool = False) -> torch.Tensor:
    """x ``[..., 2I]`` -> ``[..., I]``. ``pdl``: programmatic dependent launch (:mod:`.pdl`)."""
    x2, inter = _rows(x)
    out = torch.empty((x2.shape[0], inter), dtype=x.dtype, device=x.device)
    if x2.shape[0] > 0 and inter > 0:
        block = min(1024, triton.next_power_of_2(inter))
        grid = (x2.shape[0], triton.cdiv(inter, block))
        _silu_and_mul_kernel[grid](x2, out, x2.stride(0), out.stride(0), inter, BLOCK=block,
                                   GDC=pdl, **launch_options(pdl))
    return out.reshape(*x.shape[:-1], inter)


def silu_and_mul_fp8(x: torch.Tensor, *, pdl: bool = False) -> Fp8Rows:
    """``KernelOps.silu_and_mul_fp8`` in one launch: x ``[T, 2I]`` -> e4m3 ``[T, I]`` and fp32
    ``[T]`` scales, the bytes of :func:`silu_and_mul` followed by ``quant.quantize_fp8_rows``."""
    x2, inter = _rows(x)
    q = torch.empty((x2.shape[0], inter), dtype=FP8_DTYPE, device=x.device)
    scale = torch.empty((x2.shape[0],), dtype=torch.float32, device=x.device)
    if x2.shape[0] > 0 and inter > 0:
        block = min(triton.next_power_of_2(inter), MAX_BLOCK)
        _silu_and_mul_fp8_kernel[(x2.shape[0],)](
            x2, q, scale, x2.stride(0), q.stride(0), inter,
            BLOCK=block, ONE_PASS=inter <= block, GDC=pdl,
            num_warps=4 if block <= 1024 else 8, **launch_options(pdl),
        )
    return Fp8Rows(q, scale, x.dtype)
