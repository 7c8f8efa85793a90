"""Fused MoE for decode-sized batches: routing, gate-up and down+combine in two Triton launches.

At a few tokens per step (batch-1 decode) a MoE layer is bound by reading its selected experts'
weights, and the general kernel's fixed costs (routing, two alignment launches, the sum over k)
are most of its time: six launches per layer, ~50 layers per step. Here:

1. **Gate-up** (grid ``[T * k, cdiv(I_pad, BLOCK_N1)]``): each program takes one (token, j)
   pair, re-derives the token's routing from its router logits (softmax or sigmoid, top k by
   repeated arg-max with ties to the lower id, optional renormalisation and scaling: the
   semantics of :func:`anyware.kernels.triton.moe_route.route`), and computes
   ``silu(gate) * up`` for a ``BLOCK_N1`` slice of the pair's expert as a GEMV (fp32
   accumulation), stored in fp32 ``[T * k, I_pad]``.
   The programs of the first ``BLOCK_N1`` slice also store the pair's expert id and routing
   weight (int32 / fp32 ``[T * k]``): the down kernel reads them rather than routing again.
2. **Down + combine** (grid ``[T, cdiv(H, BLOCK_N2)]``): each program sums
   ``weight_j * (w2[e_j] @ inter[t, j])`` over the k experts in fp32, storing ``[T, H]`` in
   the hidden dtype: the routing weights and the sum over k are applied here. In bf16 / fp16 /
   fp32 (``FLAT2``, the default) the k experts' columns are one reduction of ``k * I_pad``
   columns: each ``BLOCK_K2`` chunk gathers its columns' experts and scales the intermediate by
   their weights, so the loop's loads are independent of each other and pipeline
   (``STAGES2``). The first version walked the experts one after another, a chain of dependent
   loads per program that held the kernel to about a third of the bandwidth at one token
   (session 10's profile: as long as gate-up, which reads twice the bytes). fp8 experts keep
   the per-expert walk: each expert's output is scaled and rounded before the weighted sum,
   as ``MoEBackend.experts``' spec does.

Recomputing the top-k in every gate-up program (the pair's expert decides which weights it
reads) costs a few hundred flops on ``E`` logits, much less than a separate routing launch.
Pairs are not grouped by expert: two tokens choosing the same expert read its weights twice,
so this path is for batches where that is rare (see
:func:`use_small_path`). No host syncs: graph-safe. Block sizes: :data:`DEFAULT_SMALL_CONFIG`,
overridden by the ``"small"`` entry of the tuned table (``moe_config``).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from anyware.kernels.triton.pdl import gdc_enter, launch_options
from anyware.kernels.triton.quant import fp8_quantize, fp8_scale

DEFAULT_SMALL_CONFIG = {"BLOCK_N1": 16, "BLOCK_K1": 256, "WARPS1": 4,
                        "BLOCK_N2": 16, "BLOCK_K2": 256, "WARPS2": 4, "STAGES2": 3, "FLAT2": 1}


def use_small_path(tokens: int, num_experts: int, top_k: int) -> bool:
    """One token, or few enough (token, expert) pairs that repeated experts are unlikely
    (``T * k * 4 <= E``: for 128 experts and top 8 up to 4 tokens; for 8 experts and top 2
    only one)."""
    return tokens == 1 or tokens * top_k * 4 <= num_experts


@triton.jit
def _topk_route(logits_ptr, row, stride_l, num_experts, scale, TOP_K: tl.constexpr,
                K_P2: tl.constexpr, E_P2: tl.constexpr, SIGMOID: tl.constexpr,
                RENORM: tl.constexpr):
    offs = tl.arange(0, E_P2)
    real = offs < num_experts
    x = tl.load(logits_ptr + row * stride_l + offs, mask=real, other=float("-inf")).to(tl.float32)
    if SIGMOID:
        s = tl.sigmoid(x)
    else:
        e = tl.exp(x - tl.max(x, 0))
        e = tl.where(real, e, 0.0)
        s = e / tl.sum(e, 0)
    s = tl.where(real, s, -1.0)
    ks = tl.arange(0, K_P2)
    weights = tl.zeros([K_P2], dtype=tl.float32)
    ids = tl.zeros([K_P2], dtype=tl.int32)
    for j in tl.static_range(TOP_K):
        best = tl.max(s, 0)
        idx = tl.min(tl.where(s == best, offs, E_P2), 0)
        weights = tl.where(ks == j, best, weights)
        ids = tl.where(ks == j, idx, ids)
        s = tl.where(offs == idx, -2.0, s)
    if RENORM:
        weights = weights / tl.sum(tl.where(ks < TOP_K, weights, 0.0), 0)
    return weights * scale, ids


@triton.jit
def _row_scale(row_ptr, n, BLOCK: tl.constexpr):
    """fp8 W8A8: the e4m3 scale of a row of ``n`` elements (``quant.fp8_scale`` of its
    absolute maximum)."""
    amax = tl.zeros([BLOCK], dtype=tl.float32)
    for k0 in range(0, n, BLOCK):
        offs = k0 + tl.arange(0, BLOCK)
        amax = tl.maximum(amax, tl.abs(tl.load(row_ptr + offs, mask=offs < n, other=0.0)
                                       .to(tl.float32)))
    return fp8_scale(tl.max(amax, 0))


@triton.jit
def _gate_up_kernel(x_ptr, logits_ptr, w13_ptr, inter_ptr, s13_ptr, ids_ptr, wts_ptr,
                    stride_x, stride_l,
                    num_experts, scale, hidden, ip, stride_we, stride_wn, stride_wk, stride_se,
                    TOP_K: tl.constexpr, K_P2: tl.constexpr, E_P2: tl.constexpr,
                    SIGMOID: tl.constexpr, RENORM: tl.constexpr, FP8: tl.constexpr,
                    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GDC: tl.constexpr):
    gdc_enter(GDC)
    pair = tl.program_id(0)
    tok = (pair // TOP_K).to(tl.int64)
    j = pair % TOP_K
    weights, ids = _topk_route(logits_ptr, tok, stride_l, num_experts, scale, TOP_K, K_P2,
                               E_P2, SIGMOID, RENORM)
    pick = tl.arange(0, K_P2) == j
    expert = tl.sum(tl.where(pick, ids, 0), 0).to(tl.int64)
    if tl.program_id(1) == 0:  # the pair's routing, for the down kernel
        tl.store(ids_ptr + pair, expert.to(tl.int32))
        tl.store(wts_ptr + pair, tl.sum(tl.where(pick, weights, 0.0), 0))
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = offs_n < ip
    base = w13_ptr + expert * stride_we + offs_n[:, None].to(tl.int64) * stride_wn
    x_row = x_ptr + tok * stride_x
    if FP8:  # the token row quantised per row, recomputed by every program (H elements)
        xs = _row_scale(x_row, hidden, BLOCK_K)
    acc_g = tl.zeros([BLOCK_N], dtype=tl.float32)
    acc_u = tl.zeros([BLOCK_N], dtype=tl.float32)
    for k0 in range(0, hidden, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        k_ok = offs_k < hidden
        x = tl.load(x_row + offs_k, mask=k_ok, other=0.0).to(tl.float32)
        if FP8:  # the e4m3 value, exact in fp32
            x = fp8_quantize(x, xs)
        mask = n_ok[:, None] & k_ok[None, :]
        g = tl.load(base + offs_k[None, :] * stride_wk, mask=mask, other=0.0).to(tl.float32)
        u = tl.load(base + ip * stride_wn + offs_k[None, :] * stride_wk, mask=mask,
                    other=0.0).to(tl.float32)
        acc_g += tl.sum(g * x[None, :], 1)
        acc_u += tl.sum(u * x[None, :], 1)
    if FP8:  # row scale, then the expert's per-row weight scales (the reference's order)
        s_row = s13_ptr + expert * stride_se
        acc_g = acc_g * xs * tl.load(s_row + offs_n, mask=n_ok, other=0.0)
        acc_u = acc_u * xs * tl.load(s_row + ip + offs_n, mask=n_ok, other=0.0)
    h = acc_g * tl.sigmoid(acc_g) * acc_u
    if FP8:  # the intermediate in the activation dtype, as the reference rounds it
        h = h.to(x_ptr.dtype.element_ty).to(tl.float32)
    tl.store(inter_ptr + pair.to(tl.int64) * ip + offs_n, h, mask=n_ok)


@triton.jit
def _down_flat_kernel(inter_ptr, ids_ptr, wts_ptr, w2_ptr, out_ptr, stride_o, hidden, ip,
                      stride_we, stride_wn, stride_wk,
                      TOP_K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                      GDC: tl.constexpr):
    gdc_enter(GDC)
    tok = tl.program_id(0).to(tl.int64)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = offs_n < hidden
    rows = w2_ptr + offs_n[:, None].to(tl.int64) * stride_wn
    first = tok * TOP_K  # the token's pairs are rows first .. first + k - 1 of ``inter``
    cols = TOP_K * ip
    acc = tl.zeros([BLOCK_N], dtype=tl.float32)
    for c0 in range(0, cols, BLOCK_K):
        c = c0 + tl.arange(0, BLOCK_K)
        c_ok = c < cols
        j = c // ip
        expert = tl.load(ids_ptr + first + j, mask=c_ok, other=0).to(tl.int64)
        a = tl.load(inter_ptr + first * ip + c, mask=c_ok, other=0.0)
        a = a * tl.load(wts_ptr + first + j, mask=c_ok, other=0.0)
        b = tl.load(rows + expert[None, :] * stride_we + (c - j * ip)[None, :] * stride_wk,
                    mask=n_ok[:, None] & c_ok[None, :], other=0.0).to(tl.float32)
        acc += tl.sum(b * a[None, :], 1)
    tl.store(out_ptr + tok * stride_o + offs_n, acc.to(out_ptr.dtype.element_ty), mask=n_ok)


@triton.jit
def _down_combine_kernel(inter_ptr, ids_ptr, wts_ptr, w2_ptr, out_ptr, s2_ptr, stride_o,
                         hidden, ip, stride_we, stride_wn, stride_wk, stride_se,
                         TOP_K: tl.constexpr, FP8: tl.constexpr,
                         BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GDC: tl.constexpr):
    gdc_enter(GDC)
    tok = tl.program_id(0).to(tl.int64)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = offs_n < hidden
    acc = tl.zeros([BLOCK_N], dtype=tl.float32)
    for j in tl.static_range(TOP_K):  # the pairs' routing as the gate-up kernel stored it
        expert = tl.load(ids_ptr + tok * TOP_K + j).to(tl.int64)
        weight = tl.load(wts_ptr + tok * TOP_K + j)
        base = w2_ptr + expert * stride_we + offs_n[:, None].to(tl.int64) * stride_wn
        row = inter_ptr + (tok * TOP_K + j) * ip
        if FP8:  # the intermediate row quantised per row (padding columns are 0)
            hs = _row_scale(row, ip, BLOCK_K)
        part = tl.zeros([BLOCK_N], dtype=tl.float32)
        for k0 in range(0, ip, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)
            k_ok = offs_k < ip
            a = tl.load(row + offs_k, mask=k_ok, other=0.0)
            if FP8:
                a = fp8_quantize(a, hs)
            b = tl.load(base + offs_k[None, :] * stride_wk, mask=n_ok[:, None] & k_ok[None, :],
                        other=0.0).to(tl.float32)
            part += tl.sum(b * a[None, :], 1)
        if FP8:
            part = part * hs * tl.load(s2_ptr + expert * stride_se + offs_n, mask=n_ok,
                                       other=0.0)
            # the expert's output row in the activation dtype, as ``experts`` returns it
            part = part.to(out_ptr.dtype.element_ty).to(tl.float32)
        acc += weight * part
    tl.store(out_ptr + tok * stride_o + offs_n, acc.to(out_ptr.dtype.element_ty), mask=n_ok)


def fused_moe_small(hidden: torch.Tensor, router_logits: torch.Tensor, w13: torch.Tensor,
                    w2: torch.Tensor, top_k: int, renormalize: bool, scoring: str = "softmax",
                    routed_scaling_factor: float = 1.0, config: dict | None = None,
                    scales: tuple[torch.Tensor, torch.Tensor] | None = None, *,
                    pdl: bool = False) -> torch.Tensor:
    """``hidden [T, H]``, ``router_logits [T, E]``, weights in the
    :class:`~anyware.plugin.MoEWeightLayout` (``w13 [E, 2 I_pad, H]``, ``w2 [E, H, I_pad]``)
    -> ``[T, H]`` in ``hidden.dtype``; routing as :func:`~anyware.kernels.triton.moe_route.route`.

    ``scales`` ``(w13_scale [E, 2 I_pad], w2_scale [E, H])``: fp8 W8A8 experts
    (``MoEBackend.experts``' spec): each program quantises its token row (gate-up) or its
    intermediate row (down) per row itself — the row is a few thousand elements, re-read from
    cache — so the path stays two launches. ``pdl``: both launched with programmatic dependent
    launch (:mod:`.pdl`)."""
    if scoring not in ("softmax", "sigmoid"):
        raise ValueError(f"router scoring {scoring!r}; known: softmax, sigmoid")
    cfg = {**DEFAULT_SMALL_CONFIG, **(config or {})}
    t, h = hidden.shape
    e = router_logits.shape[1]
    ip = w13.shape[1] // 2
    out = torch.empty((t, h), dtype=hidden.dtype, device=hidden.device)
    if t == 0:
        return out
    x = hidden if hidden.stride(-1) == 1 else hidden.contiguous()
    logits = router_logits if router_logits.stride(-1) == 1 else router_logits.contiguous()
    inter = torch.empty((t * top_k, ip), dtype=torch.float32, device=hidden.device)
    pair_ids = torch.empty(t * top_k, dtype=torch.int32, device=hidden.device)
    pair_wts = torch.empty(t * top_k, dtype=torch.float32, device=hidden.device)
    route = dict(TOP_K=top_k, K_P2=triton.next_power_of_2(top_k), E_P2=triton.next_power_of_2(e),
                 SIGMOID=scoring == "sigmoid", RENORM=renormalize)
    scale = float(routed_scaling_factor)
    fp8 = scales is not None
    s13, s2 = (s.float().contiguous() for s in scales) if fp8 else (inter, inter)
    _gate_up_kernel[(t * top_k, triton.cdiv(ip, cfg["BLOCK_N1"]))](
        x, logits, w13, inter, s13, pair_ids, pair_wts, x.stride(0), logits.stride(0), e,
        scale, h, ip,
        w13.stride(0), w13.stride(1), w13.stride(2), s13.stride(0), **route, FP8=fp8,
        BLOCK_N=cfg["BLOCK_N1"], BLOCK_K=cfg["BLOCK_K1"], GDC=pdl, num_warps=cfg["WARPS1"],
        **launch_options(pdl))
    grid2 = (t, triton.cdiv(h, cfg["BLOCK_N2"]))
    if cfg["FLAT2"] and not fp8:
        _down_flat_kernel[grid2](
            inter, pair_ids, pair_wts, w2, out, out.stride(0), h, ip, w2.stride(0),
            w2.stride(1), w2.stride(2), TOP_K=top_k, BLOCK_N=cfg["BLOCK_N2"],
            BLOCK_K=cfg["BLOCK_K2"], GDC=pdl, num_warps=cfg["WARPS2"], num_stages=cfg["STAGES2"],
            **launch_options(pdl))
        return out
    _down_combine_kernel[grid2](
        inter, pair_ids, pair_wts, w2, out, s2, out.stride(0), h, ip, w2.stride(0),
        w2.stride(1), w2.stride(2), s2.stride(0), TOP_K=top_k, FP8=fp8,
        BLOCK_N=cfg["BLOCK_N2"], BLOCK_K=cfg["BLOCK_K2"], GDC=pdl, num_warps=cfg["WARPS2"],
        **launch_options(pdl))
    return out
