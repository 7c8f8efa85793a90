"""Paged extend attention: new tokens of a ragged batch attend causally over their request's
cached prefix and themselves, reading K/V from the paged cache (after the store).

Serves prefill (prefix 0 or not), chunked prefill, mixed batches (decode rows are extends of
length 1) and verify (extends of ``num_draft_tokens + 1``; a tree verify with a per-request mask over its
new tokens). Grid
``(B, Hq, cdiv(max_extend_len, BLOCK_M))``: one program per request, query head and block of
new tokens; blocks past a request's extend length do no work.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _extend_kernel(
    q_ptr, kc_ptr, vc_ptr, o_ptr, pt_ptr, pre_ptr, ext_ptr, start_ptr, tree_ptr,
    stride_qt, stride_qh, stride_kcs, stride_kch, stride_vcs, stride_vch,
    stride_ot, stride_oh, stride_pt, stride_tb, stride_tr,
    scale, softcap, window,
    G: tl.constexpr, D: tl.constexpr, DV: tl.constexpr, PAGE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
    HAS_SOFTCAP: tl.constexpr, HAS_WINDOW: tl.constexpr, PRECISION: tl.constexpr,
    UPCAST: tl.constexpr, HAS_TREE: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1)
    m0 = tl.program_id(2) * BLOCK_M
    hk = h // G
    prefix = tl.load(pre_ptr + b)
    ext = tl.load(ext_ptr + b)
    row0 = tl.load(start_ptr + b).to(tl.int64)
    seq_len = prefix + ext

    m = m0 + tl.arange(0, BLOCK_M)
    mmask = m < ext
    qpos = prefix + m
    d = tl.arange(0, BLOCK_D)
    dv = tl.arange(0, BLOCK_DV)
    rows = row0 + m
    q = tl.load(
        q_ptr + rows[:, None] * stride_qt + h * stride_qh + d[None, :],
        mask=mmask[:, None] & (d[None, :] < D), other=0.0,
    )
    if UPCAST:
        q = q.to(tl.float32)
    hi = tl.minimum(seq_len, prefix + m0 + BLOCK_M)
    if HAS_TREE:  # the mask, not the order, says which new tokens a row sees
        hi = seq_len
    hi = tl.where(m0 < ext, hi, 0)
    lo = 0
    if HAS_WINDOW:
        lo = tl.maximum(prefix + m0 - window + 1, 0)
        lo = (lo // BLOCK_N) * BLOCK_N
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], tl.float32)
    qk_scale = scale * 1.4426950408889634
    for n0 in range(lo, hi, BLOCK_N):
        pos = n0 + tl.arange(0, BLOCK_N)
        nmask = pos < hi
        page = tl.load(pt_ptr + b * stride_pt + pos // PAGE, mask=nmask, other=0)
        slot = page.to(tl.int64) * PAGE + pos % PAGE
        k = tl.load(
            kc_ptr + slot[None, :] * stride_kcs + hk * stride_kch + d[:, None],
            mask=nmask[None, :] & (d[:, None] < D), other=0.0,
        )
        k = k.to(q.dtype)  # an fp8 cache (or the interpreter's fp32 upcast) computes as q
        s = tl.dot(q, k, input_precision=PRECISION)
        if HAS_SOFTCAP:
            s = s * scale / softcap
            s = softcap * (2.0 * tl.sigmoid(2.0 * s) - 1.0) * 1.4426950408889634
        else:
            s = s * qk_scale
        if HAS_TREE:
            rel = pos - prefix  # index among the request's new tokens (< 0: the prefix)
            new = nmask & (rel >= 0)
            seen = tl.load(tree_ptr + b * stride_tb + m[:, None] * stride_tr + rel[None, :],
                           mask=mmask[:, None] & new[None, :], other=0)
            allowed = nmask[None, :] & ((rel[None, :] < 0) | (seen != 0))
        else:
            allowed = nmask[None, :] & (pos[None, :] <= qpos[:, None])
        if HAS_WINDOW:
            allowed = allowed & (pos[None, :] > qpos[:, None] - window)
        s = tl.where(allowed, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp2(m_i - m_safe)
        p = tl.exp2(s - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(
            vc_ptr + slot[:, None] * stride_vcs + hk * stride_vch + dv[None, :],
            mask=nmask[:, None] & (dv[None, :] < DV), other=0.0,
        )
        v = v.to(q.dtype)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
    tl.store(
        o_ptr + rows[:, None] * stride_ot + h * stride_oh + dv[None, :],
        out.to(o_ptr.dtype.element_ty),
        mask=mmask[:, None] & (dv[None, :] < DV),
    )


def extend_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    page_table: torch.Tensor,
    prefix_lens: torch.Tensor,
    extend_lens: torch.Tensor,
    extend_start: torch.Tensor,
    max_extend_len: int,
    page_size: int,
    scale: float,
    *,
    out: torch.Tensor | None = None,
    sliding_window: int | None = None,
    logit_softcap: float | None = None,
    block_m: int | None = None,
    block_n: int | None = None,
    tree_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Causal attention of the new tokens over each request's KV (already in the cache).

    q ``[T, Hq, D]`` (request ``i``'s tokens at rows ``extend_start[i] ..``); caches
    ``[S, Hkv, D]``; page_table int32 ``[B, P]``; prefix/extend lens and starts int32 ``[B]``
    on the device; ``max_extend_len`` is the host-side maximum (sizes the grid).
    ``tree_mask`` (bool/int ``[B, n, n]``, ``n >= max_extend_len``): new token ``a`` of request
    ``i`` sees new token ``b`` iff ``tree_mask[i, a, b]`` (the prefix always), instead of
    causally; read on the device, so a captured launch replays any mask of that shape.
    Returns ``[T, Hq, Dv]`` in ``q.dtype``.
    """
    t, hq, d = q.shape
    hkv, dv = v_cache.shape[1], v_cache.shape[2]
    bsz = extend_lens.shape[0]
    if out is None:
        out = torch.empty((t, hq, dv), dtype=q.dtype, device=q.device)
    if t == 0 or bsz == 0 or max_extend_len == 0:
        return out
    interp = q.device.type == "cpu"
    if block_m is None:
        block_m = 16 if interp else (64 if d <= 128 else 32)
    if block_n is None:
        block_n = 16 if interp else (64 if d <= 128 else 32)
    block_m = min(block_m, max(16, triton.next_power_of_2(max_extend_len)))
    fp32 = q.dtype == torch.float32
    tree = None
    if tree_mask is not None:
        tree = tree_mask if tree_mask.dtype == torch.int8 else tree_mask.to(torch.int8)
        tree = tree.contiguous()
    grid = (bsz, hq, triton.cdiv(max_extend_len, block_m))
    _extend_kernel[grid](
        q, k_cache, v_cache, out, page_table, prefix_lens, extend_lens, extend_start,
        tree if tree is not None else extend_lens,
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1),
        v_cache.stride(0), v_cache.stride(1), out.stride(0), out.stride(1),
        page_table.stride(0), tree.stride(0) if tree is not None else 0,
        tree.stride(1) if tree is not None else 0,
        scale, logit_softcap or 1.0, sliding_window or 0,
        G=hq // hkv, D=d, DV=dv, PAGE=page_size,
        BLOCK_M=block_m, BLOCK_N=block_n,
        BLOCK_D=triton.next_power_of_2(d), BLOCK_DV=triton.next_power_of_2(dv),
        HAS_SOFTCAP=bool(logit_softcap), HAS_WINDOW=sliding_window is not None,
        PRECISION="ieee" if fp32 else "tf32",
        UPCAST=interp,  # the interpreter's low-precision dot is not reliable: do it in fp32
        HAS_TREE=tree is not None,
        num_warps=4 if block_m <= 32 else 8, num_stages=2,
    )
    return out
