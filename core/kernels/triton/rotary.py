"""Rotary position embedding (neox and GPT-J pairing); positions are gathered in-kernel from
the fp32 ``cos_sin`` cache ``[max_pos, rot_dim]`` (cos in the first half, sin in the second)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _rotary_kernel(
    x_ptr, out_ptr, pos_ptr, cs_ptr,
    stride_xt, stride_xh, stride_ot, stride_oh, stride_cs,
    H, D: tl.constexpr, ROT: tl.constexpr, IS_NEOX: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr,
):
    t = tl.program_id(0).to(tl.int64)
    hb = tl.program_id(1)
    pos = tl.load(pos_ptr + t).to(tl.int64)
    h = hb * BLOCK_H + tl.arange(0, BLOCK_H)[:, None]
    d = tl.arange(0, BLOCK_D)[None, :]
    HALF: tl.constexpr = ROT // 2
    hmask = h < H
    mask = hmask & (d < D)
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
    base = x_ptr + t * stride_xt + h * stride_xh
    x = tl.load(base + d, mask=mask, other=0.0)
    xp = tl.load(base + partner, mask=mask & rot, other=0.0).to(tl.float32)
    cos = tl.load(cs_ptr + pos * stride_cs + fidx, mask=rot, other=1.0)
    sin = tl.load(cs_ptr + pos * stride_cs + HALF + fidx, mask=rot, other=0.0)
    y = x.to(tl.float32) * cos + sign * xp * sin
    y = tl.where(rot, y.to(x.dtype), x)
    tl.store(out_ptr + t * stride_ot + h * stride_oh + d, y, mask=mask)


def _rotate(x: torch.Tensor, positions, cos_sin, is_neox: bool) -> torch.Tensor:
    t, h, d = x.shape
    if x.stride(-1) != 1:
        x = x.contiguous()
    out = torch.empty((t, h, d), dtype=x.dtype, device=x.device)
    if t == 0:
        return out
    block_h = min(triton.next_power_of_2(h), 4)
    grid = (t, triton.cdiv(h, block_h))
    _rotary_kernel[grid](
        x, out, positions, cos_sin,
        x.stride(0), x.stride(1), out.stride(0), out.stride(1), cos_sin.stride(0),
        h, D=d, ROT=cos_sin.shape[-1], IS_NEOX=is_neox,
        BLOCK_H=block_h, BLOCK_D=triton.next_power_of_2(d),
    )
    return out


def apply_rotary(
    q: torch.Tensor,
    k: torch.Tensor,
    positions: torch.Tensor,
    cos_sin: torch.Tensor,
    is_neox: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """q ``[T, Hq, D]``, k ``[T, Hk, D]``, positions int ``[T]``; returns new ``(q, k)``."""
    if cos_sin.dtype != torch.float32 or cos_sin.stride(-1) != 1:
        cos_sin = cos_sin.float().contiguous()
    return _rotate(q, positions, cos_sin, is_neox), _rotate(k, positions, cos_sin, is_neox)
