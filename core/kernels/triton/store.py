"""KV-cache store: scatter each new token's K and V rows to its slot (NHD flat cache)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from anyware.kernels.triton.pdl import gdc_enter, launch_options


@triton.jit
def _saturate_e4m3(x):
    """``x`` clamped to +-448 and rounded to the nearest e4m3 value (ties to even) in fp32
    arithmetic, so the conversion that follows is exact on every target (the interpreter's
    own fp32 -> fp8 conversion does not round to nearest). The quantum is 2^(e - 3) for the
    exponent e of x (at least -6: e4m3's subnormals), built from bits; adding and taking away
    1.5 * 2^23 rounds |x / quantum| < 2^22 to an integer, ties to even; ``x / quantum`` is the
    product with the power of two ``2^(3 - e)`` (exact; Triton's fp32 ``/`` is an
    approximate division on NVIDIA GPUs).

    The sign is put back as a bit (x's own sign bit ORed into the magnitude), so a negative
    value that rounds to zero gives -0 as torch's conversion does: the H200 (session 8)
    compiled the former ``where(x < 0, -r, r)`` to +0 there, the interpreter to -0."""
    xf = x.to(tl.float32)
    sign = (xf.to(tl.int32, bitcast=True) >> 31) << 31  # 0x80000000 for a negative x (and -0)
    x = tl.minimum(tl.maximum(xf, -448.0), 448.0)
    e = ((x.to(tl.int32, bitcast=True) >> 23) & 0xFF) - 127
    e = tl.maximum(e, -6)
    quantum = ((e - 3 + 127) << 23).to(tl.float32, bitcast=True)
    inv_quantum = ((3 - e + 127) << 23).to(tl.float32, bitcast=True)
    r = tl.abs(((x * inv_quantum + 12582912.0) - 12582912.0) * quantum)
    return (r.to(tl.int32, bitcast=True) | sign).to(tl.float32, bitcast=True)


@triton.jit
def _store_kv_kernel(
    k_ptr, v_ptr, kc_ptr, vc_ptr, slots_ptr,
    stride_kt, stride_kh, stride_vt, stride_vh,
    stride_kcs, stride_kch, stride_vcs, stride_vch,
    H: tl.constexpr, DK: tl.constexpr, DV: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_DK: tl.constexpr, BLOCK_DV: tl.constexpr,
    SATURATE: tl.constexpr, GDC: tl.constexpr,
):
    gdc_enter(GDC)
    t = tl.program_id(0)
    slot = tl.load(slots_ptr + t).to(tl.int64)
    h = tl.arange(0, BLOCK_H)[:, None]
    dk = tl.arange(0, BLOCK_DK)[None, :]
    dv = tl.arange(0, BLOCK_DV)[None, :]
    mk = (h < H) & (dk < DK)
    mv = (h < H) & (dv < DV)
    k = tl.load(k_ptr + t * stride_kt + h * stride_kh + dk, mask=mk)
    if SATURATE:  # fp8 e4m3, scale 1.0: saturate rather than overflow
        k = _saturate_e4m3(k)
    tl.store(kc_ptr + slot * stride_kcs + h * stride_kch + dk, k.to(kc_ptr.dtype.element_ty), mask=mk)
    v = tl.load(v_ptr + t * stride_vt + h * stride_vh + dv, mask=mv)
    if SATURATE:
        v = _saturate_e4m3(v)
    tl.store(vc_ptr + slot * stride_vcs + h * stride_vch + dv, v.to(vc_ptr.dtype.element_ty), mask=mv)


def store_kv(
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    slots: torch.Tensor,
    *,
    pdl: bool = False,
) -> None:
    """``k_cache[slots] = k``; ``v_cache[slots] = v`` (cast to the cache dtype; an fp8 e4m3
    cache stores values saturated to +-448, scale 1.0).

    k ``[T, H, Dk]``, v ``[T, H, Dv]`` (last dim contiguous; any token/head strides);
    caches ``[S, H, D]`` with a contiguous last dim; slots int ``[T]``. ``pdl``:
    programmatic dependent launch (:mod:`.pdl`).
    """
    t, h, dk = k.shape
    dv = v.shape[-1]
    if t == 0:
        return
    if k.stride(-1) != 1 or v.stride(-1) != 1:
        k, v = k.contiguous(), v.contiguous()
    _store_kv_kernel[(t,)](
        k, v, k_cache, v_cache, slots,
        k.stride(0), k.stride(1), v.stride(0), v.stride(1),
        k_cache.stride(0), k_cache.stride(1), v_cache.stride(0), v_cache.stride(1),
        H=h, DK=dk, DV=dv,
        BLOCK_H=triton.next_power_of_2(h),
        BLOCK_DK=triton.next_power_of_2(dk),
        BLOCK_DV=triton.next_power_of_2(dv),
        SATURATE=k_cache.dtype == torch.float8_e4m3fn, GDC=pdl, **launch_options(pdl),
    )
