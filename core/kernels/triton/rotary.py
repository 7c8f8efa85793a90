"""Rotary position embedding (neox and GPT-J pairing), optionally after a per-head RMSNorm
(Qwen3's q/k norm), for q and k in ONE launch.

Positions are gathered in-kernel from the fp32 ``cos_sin`` cache ``[max_pos, rot_dim]`` (cos in
the first half, sin in the second). The grid is ``(T, q head blocks + k head blocks)``: a
program decides from its head-block index whether it works on q or on k. With norm weights the
whole head row is normalised in fp32 (over all ``D`` dims, even when only the first ``rot_dim``
rotate), the rotation partner is normalised with the same row scale, and the result is rounded
to the input dtype once.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from anyware.kernels.triton.pdl import gdc_enter, launch_options


@triton.jit
def _rotary_kernel(
    q_ptr, k_ptr, qo_ptr, ko_ptr, qw_ptr, kw_ptr, pos_ptr, cs_ptr,
    stride_qt, stride_qh, stride_kt, stride_kh,
    stride_qot, stride_qoh, stride_kot, stride_koh, stride_cs,
    HQ, HK, NQB, eps,
    D: tl.constexpr, ROT: tl.constexpr, IS_NEOX: tl.constexpr, HAS_W: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr, GDC: tl.constexpr,
):
    gdc_enter(GDC)
    t = tl.program_id(0).to(tl.int64)
    hb = tl.program_id(1)
    # q or k, decided per program; selects rather than branches, so that an int argument
    # that Triton specialises (== 1, e.g. a single KV head) cannot mismatch between branches
    is_q = hb < NQB
    x_ptr = tl.where(is_q, q_ptr, k_ptr)
    o_ptr = tl.where(is_q, qo_ptr, ko_ptr)
    w_ptr = tl.where(is_q, qw_ptr, kw_ptr)
    sxt = tl.where(is_q, stride_qt, stride_kt)
    sxh = tl.where(is_q, stride_qh, stride_kh)
    sot = tl.where(is_q, stride_qot, stride_kot)
    soh = tl.where(is_q, stride_qoh, stride_koh)
    H = tl.where(is_q, HQ, HK)
    h0 = tl.where(is_q, hb, hb - NQB) * BLOCK_H
    pos = tl.load(pos_ptr + t).to(tl.int64)
    h = h0 + tl.arange(0, BLOCK_H)[:, None]
    d = tl.arange(0, BLOCK_D)[None, :]
    HALF: tl.constexpr = ROT // 2
    mask = (h < H) & (d < D)
    rot = d < ROT
    if IS_NEOX:
        partner = tl.where(d < HALF, d + HALF, d - HALF)
        sign = tl.where(d < HALF, -1.0, 1.0)
        fidx = d % HALF
    else:
        partner = d ^ 1
        sign = tl.where(d % 2 == 0, -1.0, 1.0)
        fidx = d // 2
    fidx = tl.where(rot, fidx, 0)
    partner = tl.where(rot, partner, d)
    base = x_ptr + t * sxt + h * sxh
    x_in = tl.load(base + d, mask=mask, other=0.0)
    x = x_in.to(tl.float32)
    # the partner positions of the same row (already in cache: the row was just read)
    xp = tl.load(base + partner, mask=mask & rot, other=0.0).to(tl.float32)
    if HAS_W:
        # per-head RMSNorm in fp32 over the full head dim; the partner gets the same row scale
        # and its own weight, so it is exactly the normed value at the partner position
        scale = tl.rsqrt(tl.sum(x * x, axis=1) / D + eps)[:, None]
        w = tl.load(w_ptr + d, mask=d < D, other=0.0).to(tl.float32)
        wp = tl.load(w_ptr + partner, mask=rot & (d < D), other=0.0).to(tl.float32)
        x = x * scale * w
        xp = xp * scale * wp
    cos = tl.load(cs_ptr + pos * stride_cs + fidx, mask=rot, other=1.0)
    sin = tl.load(cs_ptr + pos * stride_cs + HALF + fidx, mask=rot, other=0.0)
    y = tl.where(rot, x * cos + sign * xp * sin, x)
    tl.store(o_ptr + t * sot + h * soh + d, y.to(x_in.dtype), mask=mask)


def _launch(q, k, positions, cos_sin, is_neox, q_weight, k_weight, eps, pdl=False):
    """One launch for q ``[T, Hq, D]`` and k ``[T, Hk, D]`` (strided views allowed, last dim
    contiguous); returns new contiguous ``(q, k)`` in the input dtype. No host sync."""
    t, hq, d = q.shape
    hk = k.shape[1]
    if k.shape[0] != t or k.shape[2] != d or k.dtype != q.dtype:
        raise ValueError(f"rotary: q {tuple(q.shape)} {q.dtype} and k {tuple(k.shape)} "
                         f"{k.dtype} must share T, D and dtype")
    if q.stride(-1) != 1:
        q = q.contiguous()
    if k.stride(-1) != 1:
        k = k.contiguous()
    if cos_sin.dtype != torch.float32 or cos_sin.stride(-1) != 1:
        cos_sin = cos_sin.float().contiguous()
    q_out = torch.empty((t, hq, d), dtype=q.dtype, device=q.device)
    k_out = torch.empty((t, hk, d), dtype=k.dtype, device=k.device)
    if t == 0:
        return q_out, k_out
    has_w = q_weight is not None
    if has_w:
        if q_weight.stride(-1) != 1:
            q_weight = q_weight.contiguous()
        if k_weight.dtype != q_weight.dtype or k_weight.stride(-1) != 1:
            k_weight = k_weight.to(q_weight.dtype).contiguous()
    else:  # never read (HAS_W=False); any pointer of the input's type will do
        q_weight = k_weight = q
    block_h = min(triton.next_power_of_2(max(hq, hk)), 4)
    nqb = triton.cdiv(hq, block_h)
    grid = (t, nqb + triton.cdiv(hk, block_h))
    _rotary_kernel[grid](
        q, k, q_out, k_out, q_weight, k_weight, positions, cos_sin,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1),
        q_out.stride(0), q_out.stride(1), k_out.stride(0), k_out.stride(1), cos_sin.stride(0),
        hq, hk, nqb, float(eps),
        D=d, ROT=cos_sin.shape[-1], IS_NEOX=is_neox, HAS_W=has_w,
        BLOCK_H=block_h, BLOCK_D=triton.next_power_of_2(d), GDC=pdl, **launch_options(pdl),
    )
    return q_out, k_out


def apply_rotary(
    q: torch.Tensor,
    k: torch.Tensor,
    positions: torch.Tensor,
    cos_sin: torch.Tensor,
    is_neox: bool = True,
    *,
    pdl: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """q ``[T, Hq, D]``, k ``[T, Hk, D]``, positions int ``[T]``; returns new ``(q, k)``
    (one launch for both). ``pdl``: programmatic dependent launch (:mod:`.pdl`)."""
    return _launch(q, k, positions, cos_sin, is_neox, None, None, 0.0, pdl)


def norm_rotary(
    q: torch.Tensor,
    k: torch.Tensor,
    positions: torch.Tensor,
    cos_sin: torch.Tensor,
    is_neox: bool = True,
    q_weight: torch.Tensor | None = None,
    k_weight: torch.Tensor | None = None,
    eps: float = 1e-6,
    *,
    pdl: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-head RMSNorm of q and k over the head dim (weights ``[D]``, both or neither), kept
    in fp32, then rotary; see ``KernelOps.norm_rotary``. One launch; returns new ``(q, k)``."""
    if (q_weight is None) != (k_weight is None):
        raise ValueError("norm_rotary takes both q_weight and k_weight, or neither")
    return _launch(q, k, positions, cos_sin, is_neox, q_weight, k_weight, eps, pdl)
