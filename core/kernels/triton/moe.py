"""Fused MoE in Triton: token alignment by expert, a grouped GEMM for gate-up with SiLU-mul
fused into its epilogue, a grouped GEMM for down (routing weight optionally fused), and the
weighted combine.

Data flow for ``T`` tokens, ``k`` experts each (``M = T * k`` (token, expert) pairs):

1. :func:`moe_align` groups the M pairs by expert and pads every expert's run to a multiple
   of ``BLOCK_M``, so each ``BLOCK_M`` block of sorted pairs belongs to one expert (two Triton
   launches: histogram + offsets + block experts in one program, then an atomic scatter).
   Outputs have static shapes (an upper bound ``EM = M + min(E, M) * (BLOCK_M - 1)``), padding
   slots hold the sentinel ``M``, and the number of used slots stays on the device: no host
   sync.
2. GEMM 1 (``GATED``): block ``(m, n)`` loads its pairs' token rows straight from the hidden
   states (row ``pair // k``: no gathered copy), multiplies by the gate and the up rows of its
   expert's ``w13`` and stores ``silu(gate) * up`` (``[M, I_pad]``).
3. GEMM 2: the same walk over ``w2`` (``[M, H]``), optionally times each pair's routing weight.
4. Combine: ``out[t] = sum_j y[t * k + j]`` in fp32 (:func:`~anyware.kernels.triton.moe_route.sum_topk`).

Weights follow :class:`anyware.plugin.MoEWeightLayout` (``w13 [E, 2 I_pad, H]``,
``w2 [E, H, I_pad]``). Block sizes come from :mod:`anyware.kernels.triton.moe_config`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from anyware.kernels.reference.moe import expert_counts
from anyware.kernels.triton.moe_route import sum_topk
from anyware.kernels.triton.quant import quantize_fp8_rows


def moe_align_reference(flat_ids: torch.Tensor, num_experts: int, block_m: int):
    """:func:`moe_align` as torch ops (stable order within each expert); the test oracle."""
    m = flat_ids.numel()
    dev = flat_ids.device
    em = align_bound(m, num_experts, block_m)
    flat = flat_ids.long()
    counts = expert_counts(flat, num_experts)
    padded = (counts + block_m - 1) // block_m * block_m
    padded_end = padded.cumsum(0)
    padded_start = padded_end - padded
    count_start = counts.cumsum(0) - counts
    order = torch.argsort(flat, stable=True)
    expert_sorted = flat[order]
    pos = padded_start[expert_sorted] + torch.arange(m, device=dev) - count_start[expert_sorted]
    sorted_ids = torch.full((em,), m, dtype=torch.int32, device=dev)
    sorted_ids.scatter_(0, pos, order.to(torch.int32))
    block_start = torch.arange(0, em, block_m, device=dev)
    block_expert = torch.searchsorted(padded_end, block_start, right=True)
    block_expert = block_expert.clamp_max(num_experts - 1).to(torch.int32)
    return sorted_ids, block_expert, padded_end[-1:].to(torch.int32)


def align_bound(num_pairs: int, num_experts: int, block_m: int) -> int:
    """Static upper bound of the padded length: every non-empty expert wastes < BLOCK_M."""
    return triton.cdiv(num_pairs + min(num_experts, num_pairs) * (block_m - 1), block_m) * block_m


@triton.jit
def _align_plan_kernel(ids_ptr, cursor_ptr, block_expert_ptr, used_ptr, sorted_ptr,
                       num_pairs, num_experts, em,
                       BLOCK_M: tl.constexpr, E_BINS: tl.constexpr, CHUNK: tl.constexpr,
                       NB: tl.constexpr):
    # one program: per-expert counts, padded offsets (the scatter's cursors), the expert of
    # every BLOCK_M block, the used length, and the sentinel fill of sorted ids
    counts = tl.zeros([E_BINS], dtype=tl.int32)
    for start in range(0, num_pairs, CHUNK):
        offs = start + tl.arange(0, CHUNK)
        e = tl.load(ids_ptr + offs, mask=offs < num_pairs, other=E_BINS - 1)  # spare bin
        counts += tl.histogram(e, E_BINS)
    bins = tl.arange(0, E_BINS)
    real = bins < num_experts
    counts = tl.where(real, counts, 0)
    padded = (counts + BLOCK_M - 1) // BLOCK_M * BLOCK_M
    end = tl.cumsum(padded, 0)
    tl.store(cursor_ptr + bins, end - padded, mask=real)
    tl.store(used_ptr, tl.sum(padded, 0))
    num_blocks = em // BLOCK_M
    for b0 in range(0, num_blocks, NB):
        blocks = b0 + tl.arange(0, NB)
        before = (end[None, :] <= (blocks * BLOCK_M)[:, None]) & real[None, :]
        expert = tl.minimum(tl.sum(before.to(tl.int32), 1), num_experts - 1)
        tl.store(block_expert_ptr + blocks, expert, mask=blocks < num_blocks)
    for s0 in range(0, em, CHUNK):
        offs = s0 + tl.arange(0, CHUNK)
        tl.store(sorted_ptr + offs, tl.zeros([CHUNK], dtype=tl.int32) + num_pairs, mask=offs < em)


@triton.jit
def _align_scatter_kernel(ids_ptr, cursor_ptr, sorted_ptr, num_pairs, CHUNK: tl.constexpr):
    offs = tl.program_id(0) * CHUNK + tl.arange(0, CHUNK)
    mask = offs < num_pairs
    e = tl.load(ids_ptr + offs, mask=mask, other=0)
    slot = tl.atomic_add(cursor_ptr + e, tl.full([CHUNK], 1, tl.int32), mask=mask)
    tl.store(sorted_ptr + slot, offs.to(tl.int32), mask=mask)


def moe_align(flat_ids: torch.Tensor, num_experts: int, block_m: int):
    """``flat_ids`` ``[M]`` (expert of each pair) -> ``(sorted_ids int32 [EM], block_expert
    int32 [EM / block_m], num_used int32 [1])`` in two Triton launches (a one-program plan,
    then an atomic scatter). Pairs of one expert are contiguous, in no particular order; each
    expert's run starts on a block boundary; padding slots hold ``M``."""
    m = flat_ids.numel()
    dev = flat_ids.device
    em = align_bound(m, num_experts, block_m)
    ids = flat_ids.to(torch.int32).contiguous()
    cursor = torch.empty(num_experts, dtype=torch.int32, device=dev)
    sorted_ids = torch.empty(em, dtype=torch.int32, device=dev)
    block_expert = torch.empty(em // block_m, dtype=torch.int32, device=dev)
    used = torch.empty(1, dtype=torch.int32, device=dev)
    e_bins = triton.next_power_of_2(num_experts + 1)
    _align_plan_kernel[(1,)](ids, cursor, block_expert, used, sorted_ids, m, num_experts, em,
                             BLOCK_M=block_m, E_BINS=e_bins, CHUNK=1024,
                             NB=max(16, min(64, 8192 // e_bins)), num_warps=8)
    chunk = 256
    _align_scatter_kernel[(triton.cdiv(m, chunk),)](ids, cursor, sorted_ids, m, CHUNK=chunk)
    return sorted_ids, block_expert, used


@triton.jit
def _moe_gemm_kernel(
    a_ptr, b_ptr, c_ptr, w_ptr, sorted_ptr, block_expert_ptr, used_ptr, as_ptr, bs_ptr,
    num_pairs, em, n_cols, k_dim, a_row_div, up_offset,
    stride_am, stride_ak, stride_be, stride_bn, stride_bk, stride_cm, stride_cn, stride_bse,
    GATED: tl.constexpr, MUL_WEIGHT: tl.constexpr, IEEE: tl.constexpr, UPCAST: tl.constexpr,
    SCALED: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(em, BLOCK_M)
    num_pid_n = tl.cdiv(n_cols, BLOCK_N)
    per_group = GROUP_M * num_pid_n
    first_m = (pid // per_group) * GROUP_M
    group_m = tl.minimum(num_pid_m - first_m, GROUP_M)
    pid_m = first_m + (pid % per_group) % group_m
    pid_n = (pid % per_group) // group_m
    if pid_m * BLOCK_M >= tl.load(used_ptr):
        return
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    pair = tl.load(sorted_ptr + offs_m)
    row_ok = pair < num_pairs
    expert = tl.load(block_expert_ptr + pid_m).to(tl.int64)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = offs_n < n_cols
    offs_k = tl.arange(0, BLOCK_K)
    a_rows = (pair // a_row_div).to(tl.int64)
    a_ptrs = a_ptr + a_rows[:, None] * stride_am + offs_k[None, :] * stride_ak
    b_ptrs = b_ptr + expert * stride_be + offs_n[None, :].to(tl.int64) * stride_bn + offs_k[:, None] * stride_bk
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc_up = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kk in range(0, tl.cdiv(k_dim, BLOCK_K)):
        k_ok = offs_k < k_dim - kk * BLOCK_K
        a = tl.load(a_ptrs, mask=row_ok[:, None] & k_ok[None, :], other=0.0)
        b = tl.load(b_ptrs, mask=k_ok[:, None] & n_ok[None, :], other=0.0)
        if UPCAST:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        if IEEE:
            acc += tl.dot(a, b, input_precision="ieee")
        else:
            acc += tl.dot(a, b)
        if GATED:
            bu = tl.load(b_ptrs + up_offset * stride_bn, mask=k_ok[:, None] & n_ok[None, :], other=0.0)
            if UPCAST:
                bu = bu.to(tl.float32)
            if IEEE:
                acc_up += tl.dot(a, bu, input_precision="ieee")
            else:
                acc_up += tl.dot(a, bu)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk
    if SCALED:  # fp8 W8A8: acc * row scale * column scale, the reference's order (fp32)
        a_s = tl.load(as_ptr + a_rows, mask=row_ok, other=0.0)
        bs_ptrs = bs_ptr + expert * stride_bse + offs_n
        acc = acc * a_s[:, None] * tl.load(bs_ptrs, mask=n_ok, other=0.0)[None, :]
        if GATED:
            bu_s = tl.load(bs_ptrs + up_offset, mask=n_ok, other=0.0)
            acc_up = acc_up * a_s[:, None] * bu_s[None, :]
    if GATED:
        acc = acc * tl.sigmoid(acc) * acc_up
    if MUL_WEIGHT:
        w = tl.load(w_ptr + pair, mask=row_ok, other=0.0).to(tl.float32)
        acc = acc * w[:, None]
    c_ptrs = c_ptr + pair[:, None].to(tl.int64) * stride_cm + offs_n[None, :] * stride_cn
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=row_ok[:, None] & n_ok[None, :])


def _gemm(a, b, c, weights, aligned, num_pairs, n_cols, k_dim, a_row_div, up_offset, gated,
          config: dict, a_scale=None, b_scale=None) -> None:
    """One grouped GEMM launch. ``a_scale`` fp32 ``[rows of a]`` and ``b_scale`` fp32
    ``[E, rows of b]`` (fp8 operands): the fp32 accumulator is scaled by both in the
    epilogue, before SiLU-mul / the routing weight."""
    sorted_ids, block_expert, used = aligned
    em = sorted_ids.numel()
    interp = a.device.type == "cpu"  # the Triton interpreter
    bm, bn = config["BLOCK_M"], config["BLOCK_N"]
    grid = (triton.cdiv(em, bm) * triton.cdiv(n_cols, bn),)
    scaled = a_scale is not None
    _moe_gemm_kernel[grid](
        a, b, c, weights if weights is not None else c, sorted_ids, block_expert, used,
        a_scale if scaled else c, b_scale if scaled else c,
        num_pairs, em, n_cols, k_dim, a_row_div, up_offset,
        a.stride(0), a.stride(1), b.stride(0), b.stride(1), b.stride(2), c.stride(0), c.stride(1),
        b_scale.stride(0) if scaled else 0,
        GATED=gated, MUL_WEIGHT=weights is not None, IEEE=a.dtype == torch.float32 or interp,
        UPCAST=interp,  # the interpreter's low-precision dot is not reliable: do it in fp32
        SCALED=scaled,
        BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=config["BLOCK_K"], GROUP_M=config["GROUP_M"],
        num_warps=config.get("num_warps", 4), num_stages=config.get("num_stages", 2),
    )


def expert_gemms(hidden: torch.Tensor, flat_ids: torch.Tensor, a_row_div: int,
                 w13: torch.Tensor, w2: torch.Tensor, num_experts: int, config: dict,
                 pair_weights: torch.Tensor | None = None,
                 out_dtype: torch.dtype | None = None,
                 scales: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Pairs ``p`` (expert ``flat_ids[p]``, input row ``hidden[p // a_row_div]``) ->
    ``[M, H]``: ``w2[e] @ (silu(gate) * up)``, times ``pair_weights[p]`` when given, stored in
    ``out_dtype`` (default ``hidden.dtype``).

    ``scales = (w13_scale, w2_scale)``: e4m3 ``w13``/``w2`` (``MoEBackend.experts``' fp8
    spec). The input rows are quantised per row first (:func:`~anyware.kernels.triton.quant.
    quantize_fp8_rows`, bit-exact with the reference; ``T`` token rows, not ``T * k``: every
    pair of a token quantises to the same row), GEMM 1 multiplies e4m3 tiles into fp32 and
    applies row and column scales before SiLU-mul, the intermediate is stored in
    ``hidden.dtype`` (as the reference rounds it), quantised per row by the same kernel, and
    GEMM 2 runs e4m3 x e4m3 with both scales (then the routing weight) in its epilogue. Two
    more launches than the unquantised path, no host synchronisation."""
    m = flat_ids.numel()
    h = hidden.shape[1]
    ip = w13.shape[1] // 2
    if hidden.stride(-1) != 1:
        hidden = hidden.contiguous()
    out = torch.empty((m, w2.shape[1]), dtype=out_dtype or hidden.dtype, device=hidden.device)
    if m == 0:
        return out
    aligned = moe_align(flat_ids, num_experts, config["BLOCK_M"])
    inter = torch.empty((m, ip), dtype=hidden.dtype, device=hidden.device)
    if scales is None:
        _gemm(hidden, w13, inter, None, aligned, m, ip, h, a_row_div, ip, True, config)
        _gemm(inter, w2, out, pair_weights, aligned, m, w2.shape[1], ip, 1, 0, False, config)
        return out
    w13_scale, w2_scale = (s.float().contiguous() for s in scales)
    xq, xs = quantize_fp8_rows(hidden)
    _gemm(xq, w13, inter, None, aligned, m, ip, h, a_row_div, ip, True, config, xs, w13_scale)
    iq, is_ = quantize_fp8_rows(inter)
    _gemm(iq, w2, out, pair_weights, aligned, m, w2.shape[1], ip, 1, 0, False, config,
          is_, w2_scale)
    return out


def fused_moe(hidden: torch.Tensor, topk_weights: torch.Tensor, topk_ids: torch.Tensor,
              w13: torch.Tensor, w2: torch.Tensor, config: dict,
              scales: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """The whole layer for ``hidden [T, H]`` and routing ``[T, k]`` -> ``[T, H]`` in
    ``hidden.dtype``: each pair's output weighted inside GEMM 2 (fp32), summed over k in fp32.
    ``scales``: fp8 experts (see :func:`expert_gemms`)."""
    k = topk_ids.shape[1]
    y = expert_gemms(hidden, topk_ids.reshape(-1), k, w13, w2, w13.shape[0], config,
                     pair_weights=topk_weights.reshape(-1).float().contiguous(),
                     out_dtype=torch.float32, scales=scales)
    return sum_topk(y, k, hidden.dtype)
