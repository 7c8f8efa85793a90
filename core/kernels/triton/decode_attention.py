"""Paged decode attention (one query token per request): split-KV flash-decoding.

Pass 1, grid ``(B, Hkv, num_splits)``: each program loads the query rows of the ``G`` query
heads sharing one KV head (GQA: every K/V tile is read once per group), walks its share of the
request's KV positions through the page table, and writes a partial output and log-sum-exp.
Then the splits are merged, in one of two ways:

- **in the same launch** (the default): each program counts itself done on an int32 counter of
  its ``(request, KV head)`` (an acquire-release atomic after a CTA barrier); the program that
  finishes last merges the group's ``G x num_splits`` partials (read through L2) and writes the
  output, then sets the counter back to 0 for the next launch or graph replay. With one split
  the program writes its output directly. This removes a launch per layer (at batch 1 half the
  decode attention's launches; session 8's W1 profile: 63 launches, 0.20 ms, cost per launch);
- **pass 2**, grid ``(B, Hq)`` (``fused_reduce=False``, or a workspace without counters).

``num_splits`` is a launch constant; each request divides its own ``seq_len`` (read on the
device) among the splits, so a captured graph stays valid for any sequence lengths.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from anyware.kernels.triton.pdl import gdc_enter, launch_options
from anyware.kernels.triton.quant import FP8_DTYPE


@triton.jit
def _split_weights(lse, valid, AXIS: tl.constexpr):
    """The merge weights of the splits' log2-sum-exps along ``AXIS`` (relative to their max;
    0 for invalid or empty splits) and their sum: both merges (in launch, pass 2) use it."""
    m = tl.max(lse, AXIS)
    m = tl.where(m == float("-inf"), 0.0, m)
    w = tl.where(valid, tl.exp2(lse - tl.expand_dims(m, AXIS)), 0.0)
    return w, tl.sum(w, AXIS)


@triton.jit
def _decode_split_kernel(
    q_ptr, kc_ptr, vc_ptr, pt_ptr, seq_ptr, po_ptr, plse_ptr, row_ptr, cnt_ptr, o_ptr,
    stride_qt, stride_qh, stride_kcs, stride_kch, stride_vcs, stride_vch, stride_pt,
    stride_pob, stride_poh, stride_pos, stride_lb, stride_lh, stride_cb, stride_ot, stride_oh,
    scale, softcap, window,
    G: tl.constexpr, D: tl.constexpr, DV: tl.constexpr, PAGE: tl.constexpr,
    NUM_SPLITS: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
    HAS_SOFTCAP: tl.constexpr, HAS_WINDOW: tl.constexpr, PRECISION: tl.constexpr,
    UPCAST: tl.constexpr, HAS_ROWS: tl.constexpr, HEADS_FIRST: tl.constexpr,
    F16: tl.constexpr, FUSED_REDUCE: tl.constexpr, BLOCK_S: tl.constexpr,
    EVEN_D: tl.constexpr, K_ROWS: tl.constexpr, GDC: tl.constexpr,
):
    gdc_enter(GDC)
    if HEADS_FIRST:  # grid (Hkv, B, splits): a request's KV heads run side by side
        hk = tl.program_id(0)
        b = tl.program_id(1).to(tl.int64)
    else:
        b = tl.program_id(0).to(tl.int64)
        hk = tl.program_id(1)
    split = tl.program_id(2)
    seq_len = tl.load(seq_ptr + b)
    if HAS_ROWS:  # several query rows per request (verify): the page-table row of this one
        pt_row = pt_ptr + tl.load(row_ptr + b).to(tl.int64) * stride_pt
    else:
        pt_row = pt_ptr + b * stride_pt
    start = 0
    if HAS_WINDOW:
        start = tl.maximum(seq_len - window, 0)
    span = seq_len - start
    per = tl.cdiv(tl.cdiv(span, NUM_SPLITS), BLOCK_N) * BLOCK_N
    lo = start + split * per
    hi = tl.minimum(lo + per, seq_len)

    g = tl.arange(0, BLOCK_G)
    gmask = g < G
    heads = hk * G + g
    d = tl.arange(0, BLOCK_D)
    dv = tl.arange(0, BLOCK_DV)
    dmask = d < D  # the K/V tiles' loads leave these out where EVEN_D (blocks = head dims)
    dvmask = dv < DV
    q = tl.load(
        q_ptr + b * stride_qt + heads[:, None] * stride_qh + d[None, :],
        mask=gmask[:, None] & dmask[None, :], other=0.0,
    )
    if UPCAST:
        q = q.to(tl.float32)
    elif F16:  # an fp8 cache: e4m3 -> fp16 is one conversion; fp16 holds q within its range
        q = tl.clamp(q.to(tl.float32), -65504.0, 65504.0).to(tl.float16)
    m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_G], tl.float32)
    acc = tl.zeros([BLOCK_G, BLOCK_DV], tl.float32)
    qk_scale = scale * 1.4426950408889634  # log2(e): exp2 below
    for n0 in range(lo, hi, BLOCK_N):
        pos = n0 + tl.arange(0, BLOCK_N)
        nmask = pos < hi
        page = tl.load(pt_row + pos // PAGE, mask=nmask, other=0)
        slot = page.to(tl.int64) * PAGE + pos % PAGE
        if K_ROWS:  # a [positions, D] tile (rows contiguous, as V's), transposed for the dot
            k_off = slot[:, None] * stride_kcs + hk * stride_kch + d[None, :]
            kmask = nmask[:, None]
            if not EVEN_D:
                kmask = kmask & dmask[None, :]
        else:
            k_off = slot[None, :] * stride_kcs + hk * stride_kch + d[:, None]
            kmask = nmask[None, :]
            if not EVEN_D:
                kmask = kmask & dmask[:, None]
        k = tl.load(kc_ptr + k_off, mask=kmask, other=0.0)
        if K_ROWS:
            k = tl.trans(k)
        k = k.to(q.dtype)  # an fp8 cache (or the interpreter's fp32 upcast) computes as q
        s = tl.dot(q, k, input_precision=PRECISION)
        if HAS_SOFTCAP:
            s = s * scale / softcap
            s = softcap * (2.0 * tl.sigmoid(2.0 * s) - 1.0) * 1.4426950408889634
        else:
            s = s * qk_scale
        s = tl.where(nmask[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        vmask = nmask[:, None]
        if not EVEN_D:
            vmask = vmask & dvmask[None, :]
        v = tl.load(vc_ptr + slot[:, None] * stride_vcs + hk * stride_vch + dv[None, :],
                    mask=vmask, other=0.0)
        v = v.to(q.dtype)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    # empty split: l_i == 0 -> lse = -inf, output 0
    safe_l = tl.where(l_i > 0, l_i, 1.0)
    out = acc / safe_l[:, None]
    omask = gmask[:, None] & dvmask[None, :]
    o_rows = o_ptr + b * stride_ot + heads[:, None] * stride_oh + dv[None, :]
    if FUSED_REDUCE and NUM_SPLITS == 1:  # the split is the whole output (as pass 2 gives it)
        tl.store(o_rows, out.to(o_ptr.dtype.element_ty), mask=omask)
    else:
        lse = tl.where(l_i > 0, m_i + tl.log2(safe_l), float("-inf"))
        po_rows = po_ptr + b * stride_pob + heads[:, None] * stride_poh + dv[None, :]
        tl.store(po_rows + split * stride_pos, out, mask=omask)
        tl.store(plse_ptr + b * stride_lb + heads * stride_lh + split, lse, mask=gmask)
        if FUSED_REDUCE:
            tl.debug_barrier()  # every thread's partial stored before the release below
            cnt = cnt_ptr + b * stride_cb + hk
            if tl.atomic_add(cnt, 1, sem="acq_rel") == NUM_SPLITS - 1:
                # the last split of this (request, KV head): merge the group's partials,
                # read through L2 (.cg), where the other programs' released stores are
                sp = tl.arange(0, BLOCK_S)
                valid = sp[None, :] < NUM_SPLITS
                all_lse = tl.load(
                    plse_ptr + b * stride_lb + heads[:, None] * stride_lh + sp[None, :],
                    mask=gmask[:, None] & valid, other=float("-inf"), cache_modifier=".cg")
                w, total = _split_weights(all_lse, valid, 1)
                merged = tl.zeros([BLOCK_G, BLOCK_DV], tl.float32)
                # only the splits that hold positions: a graph's split count comes from the
                # longest context, so at short lengths most are empty (weight 0, output 0)
                for i in range(0, tl.cdiv(span, tl.maximum(per, 1))):
                    part = tl.load(po_rows + i * stride_pos, mask=omask, other=0.0,
                                   cache_modifier=".cg")
                    merged += part * tl.sum(tl.where(sp[None, :] == i, w, 0.0), 1)[:, None]
                merged = merged / tl.where(total > 0, total, 1.0)[:, None]
                tl.store(o_rows, merged.to(o_ptr.dtype.element_ty), mask=omask)
                tl.atomic_xchg(cnt, 0, sem="relaxed")  # ready for the next launch


@triton.jit
def _decode_reduce_kernel(
    po_ptr, plse_ptr, o_ptr,
    stride_pob, stride_poh, stride_pos, stride_lb, stride_lh, stride_ot, stride_oh,
    DV: tl.constexpr, NUM_SPLITS: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_DV: tl.constexpr,
    GDC: tl.constexpr,
):
    gdc_enter(GDC)
    b = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1)
    s = tl.arange(0, BLOCK_S)
    dv = tl.arange(0, BLOCK_DV)
    smask = s < NUM_SPLITS
    lse = tl.load(plse_ptr + b * stride_lb + h * stride_lh + s, mask=smask, other=float("-inf"))
    w, total = _split_weights(lse, smask, 0)
    parts = tl.load(
        po_ptr + b * stride_pob + h * stride_poh + s[:, None] * stride_pos + dv[None, :],
        mask=smask[:, None] & (dv[None, :] < DV), other=0.0,
    )
    out = tl.sum(parts * w[:, None], 0) / tl.where(total > 0, total, 1.0)
    tl.store(o_ptr + b * stride_ot + h * stride_oh + dv, out.to(o_ptr.dtype.element_ty),
             mask=dv < DV)


def decode_workspace(batch_size: int, num_heads: int, num_splits: int, v_head_dim: int,
                     device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """fp32 scratch for the partial outputs ``[B, Hq, S, Dv]`` and log-sum-exps ``[B, Hq, S]``,
    and the in-launch merge's int32 counters ``[B, Hq]`` (zeros; each launch leaves them zero,
    so one workspace serves consecutive launches and graph replays on one stream, not two
    launches running at once)."""
    po = torch.empty((batch_size, num_heads, num_splits, v_head_dim), dtype=torch.float32,
                     device=device)
    lse = torch.empty((batch_size, num_heads, num_splits), dtype=torch.float32, device=device)
    counters = torch.zeros((batch_size, num_heads), dtype=torch.int32, device=device)
    return po, lse, counters


def choose_num_splits(batch_size: int, num_kv_heads: int, max_seq_len: int,
                      block_n: int = 64, target_programs: int = 512, max_splits: int = 32) -> int:
    """Enough splits to give the device about ``target_programs`` programs, no split shorter
    than ``block_n`` positions."""
    want = triton.cdiv(target_programs, max(1, batch_size * num_kv_heads))
    return max(1, min(max_splits, want, triton.cdiv(max(max_seq_len, 1), block_n)))


def decode_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    page_table: torch.Tensor,
    seq_lens: torch.Tensor,
    page_size: int,
    scale: float,
    num_splits: int,
    *,
    out: torch.Tensor | None = None,
    workspace: tuple[torch.Tensor, torch.Tensor] | None = None,
    sliding_window: int | None = None,
    logit_softcap: float | None = None,
    block_n: int | None = None,
    num_warps: int | None = None,
    num_stages: int | None = None,
    heads_first: bool = False,
    rows: torch.Tensor | None = None,
    fp16_compute: bool = True,
    fused_reduce: bool = True,
    even_dims: bool = True,
    k_rows: bool = False,
    pdl: bool = False,
) -> torch.Tensor:
    """Attention of one new token per request over its whole KV (already stored).

    q ``[B, Hq, D]`` (row ``i`` is request ``i``); caches ``[S, Hkv, D]`` NHD slots;
    page_table int32 ``[B, P]``; seq_lens int32 ``[B]`` (KV length including the new token).
    With ``rows`` (int32 ``[R]``), q has ``R`` rows and row ``r`` is a query of request
    ``rows[r]`` (its page-table row) seeing ``seq_lens[r]`` positions: a chain verify's
    ``k + 1`` tokens of a request are ``k + 1`` rows with consecutive lengths, each computed
    exactly as a decode step at that position with the same ``num_splits`` would be.
    Returns ``[B, Hq, Dv]`` in ``q.dtype``. No host sync: safe inside a captured graph.

    ``workspace``: :func:`decode_workspace`'s ``(partials, lse, counters)`` for this batch
    size and ``num_splits`` (``None``: fresh ones). ``fused_reduce`` (default on, and only
    with a workspace that has counters) merges the splits in the split launch, otherwise a
    second launch does; the merged values agree within fp32 rounding (the two sum the splits
    in different orders), and with one split they are the same bits.

    Launch configuration of the split pass (``None``: the defaults; for tuning sweeps):
    ``block_n`` KV positions per tile (64, 32 if the head dim exceeds 128; 16 under the
    interpreter), ``num_warps`` (4), ``num_stages`` (2), ``heads_first`` (False: grid
    ``(B, Hkv, splits)``; True: ``(Hkv, B, splits)``, so the programs of one request's KV
    heads are scheduled together and read each slot's ``Hkv * D`` contiguous K/V elements
    between them; the same results bit for bit). The others change the accumulation order,
    not the math: results agree within rounding, and two calls with the same configuration
    and ``num_splits`` agree bit for bit.

    ``even_dims`` (default on): where the head dims are powers of two, the tiles' loads carry
    only the positions' masks, no per-column ones (the same values, bit for bit). ``k_rows``:
    the K tile is loaded as ``[positions, D]`` (as V's) and transposed for the dot, instead of
    as ``[D, positions]`` (the same values within rounding). Both came from a profile of the
    pass over an fp8 cache (narrow loads); on an H200 (session 12, 1,024 fp8 rows) the
    unmasked loads alone were neutral and ``k_rows`` with 3 stages 7.6% faster in the kernel,
    with no gain measured on W2 fp8 as a whole, so ``k_rows`` stays off (docs/performance.md).

    ``fp16_compute`` (an fp8 cache with bf16 / fp16 queries; default on): the K and V tiles
    convert to fp16, not the query's dtype, and q is clamped to fp16's range (±65504) and
    cast. e4m3 -> fp16 is one instruction per pair where e4m3 -> bf16 is several: 5% off the
    pass over an fp8 cache on an H200 (session 10: 0.988 vs 1.043 ms at 1,024 rows), which
    still runs at 52% of bandwidth against 96% for a bf16 cache, at the same elements per
    second, so the conversion is not its main limit (docs/performance.md). Every e4m3 value
    is exact in fp16, and the probabilities keep 3 more bits than in bf16.

    ``pdl``: both passes launched with programmatic dependent launch (:mod:`.pdl`).
    """
    bsz, hq, d = q.shape
    hkv, dv = v_cache.shape[1], v_cache.shape[2]
    group = hq // hkv
    if out is None:
        out = torch.empty((bsz, hq, dv), dtype=q.dtype, device=q.device)
    if bsz == 0:
        return out
    if workspace is None:
        workspace = decode_workspace(bsz, hq, num_splits, dv, q.device)
    po, lse, *rest = workspace
    counters = rest[0] if rest and fused_reduce else None
    interp = q.device.type == "cpu"
    if block_n is None:
        block_n = 16 if interp else (32 if d > 128 else 64)
    if num_warps is None:
        num_warps = 4
    if num_stages is None:
        num_stages = 2
    fp32 = q.dtype == torch.float32
    grid = (hkv, bsz, num_splits) if heads_first else (bsz, hkv, num_splits)
    fused = fused_reduce and (counters is not None or num_splits == 1)
    cnt = counters if counters is not None else seq_lens  # unused without a merge
    block_s = max(2, triton.next_power_of_2(num_splits))
    _decode_split_kernel[grid](
        q, k_cache, v_cache, page_table, seq_lens, po, lse,
        rows if rows is not None else seq_lens, cnt, out,
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1),
        v_cache.stride(0), v_cache.stride(1), page_table.stride(0),
        po.stride(0), po.stride(1), po.stride(2), lse.stride(0), lse.stride(1),
        cnt.stride(0), out.stride(0), out.stride(1),
        scale, logit_softcap or 1.0, sliding_window or 0,
        G=group, D=d, DV=dv, PAGE=page_size, NUM_SPLITS=num_splits,
        BLOCK_G=max(16, triton.next_power_of_2(group)), BLOCK_N=block_n,
        BLOCK_D=triton.next_power_of_2(d), BLOCK_DV=triton.next_power_of_2(dv),
        HAS_SOFTCAP=bool(logit_softcap), HAS_WINDOW=sliding_window is not None,
        PRECISION="ieee" if fp32 else "tf32",
        UPCAST=interp,  # the interpreter's low-precision dot is not reliable: do it in fp32
        HAS_ROWS=rows is not None, HEADS_FIRST=heads_first,
        F16=fp16_compute and k_cache.dtype == FP8_DTYPE and q.dtype != torch.float32,
        FUSED_REDUCE=fused, BLOCK_S=block_s,
        EVEN_D=even_dims and d == triton.next_power_of_2(d) and dv == triton.next_power_of_2(dv),
        K_ROWS=k_rows, GDC=pdl,
        num_warps=num_warps, num_stages=num_stages, **launch_options(pdl),
    )
    if fused:
        return out
    _decode_reduce_kernel[(bsz, hq)](
        po, lse, out,
        po.stride(0), po.stride(1), po.stride(2), lse.stride(0), lse.stride(1),
        out.stride(0), out.stride(1),
        DV=dv, NUM_SPLITS=num_splits, BLOCK_S=block_s,
        BLOCK_DV=triton.next_power_of_2(dv), GDC=pdl, **launch_options(pdl),
    )
    return out
