"""MoE routing and the final sum over k as single Triton launches (the torch versions take five
and two small kernels per layer, which dominates batch-1 decode of models with ~50 MoE
layers even inside a CUDA graph).

* :func:`route`: one program per token: softmax (or sigmoid) of its ``E`` logits in fp32, the
  top k by repeated arg-max, optional renormalisation and scaling — the semantics of
  ``anyware.kernels.reference.moe_route`` (ties go to the lower expert id).
* :func:`sum_topk`: ``[T * k, H]`` fp32 rows -> ``[T, H]``: each token's k rows summed in fp32
  and stored in the output dtype.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _route_kernel(logits_ptr, w_ptr, ids_ptr, stride_l, num_experts, scale,
                  TOP_K: tl.constexpr, K_P2: tl.constexpr, E_P2: tl.constexpr,
                  SIGMOID: tl.constexpr, RENORM: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, E_P2)
    real = offs < num_experts
    x = tl.load(logits_ptr + row * stride_l + offs, mask=real, other=float("-inf")).to(tl.float32)
    if SIGMOID:
        s = tl.sigmoid(x)
    else:
        e = tl.exp(x - tl.max(x, 0))
        e = tl.where(real, e, 0.0)
        s = e / tl.sum(e, 0)
    s = tl.where(real, s, -1.0)  # scores are >= 0: padding never wins
    ks = tl.arange(0, K_P2)
    weights = tl.zeros([K_P2], dtype=tl.float32)
    ids = tl.zeros([K_P2], dtype=tl.int32)
    for j in tl.static_range(TOP_K):
        best = tl.max(s, 0)
        idx = tl.min(tl.where(s == best, offs, E_P2), 0)  # lowest id among ties
        weights = tl.where(ks == j, best, weights)
        ids = tl.where(ks == j, idx, ids)
        s = tl.where(offs == idx, -2.0, s)
    if RENORM:
        weights = weights / tl.sum(tl.where(ks < TOP_K, weights, 0.0), 0)
    weights = weights * scale
    tl.store(w_ptr + row * TOP_K + ks, weights, mask=ks < TOP_K)
    tl.store(ids_ptr + row * TOP_K + ks, ids, mask=ks < TOP_K)


def route(router_logits: torch.Tensor, top_k: int, renormalize: bool, scoring: str = "softmax",
          routed_scaling_factor: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``[T, E]`` -> ``(weights fp32 [T, k], ids int32 [T, k])``."""
    if scoring not in ("softmax", "sigmoid"):
        raise ValueError(f"router scoring {scoring!r}; known: softmax, sigmoid")
    t, e = router_logits.shape
    logits = router_logits if router_logits.stride(-1) == 1 else router_logits.contiguous()
    weights = torch.empty((t, top_k), dtype=torch.float32, device=logits.device)
    ids = torch.empty((t, top_k), dtype=torch.int32, device=logits.device)
    if t:
        e_p2 = triton.next_power_of_2(e)
        _route_kernel[(t,)](logits, weights, ids, logits.stride(0), e, float(routed_scaling_factor),
                            TOP_K=top_k, K_P2=triton.next_power_of_2(top_k), E_P2=e_p2,
                            SIGMOID=scoring == "sigmoid", RENORM=renormalize,
                            num_warps=4 if e_p2 <= 1024 else 8)
    return weights, ids


@triton.jit
def _sum_topk_kernel(y_ptr, out_ptr, hidden, TOP_K: tl.constexpr, BLOCK_H: tl.constexpr):
    tok = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    mask = offs < hidden
    acc = tl.zeros([BLOCK_H], dtype=tl.float32)
    for j in tl.static_range(TOP_K):
        acc += tl.load(y_ptr + (tok * TOP_K + j) * hidden + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + tok * hidden + offs, acc.to(out_ptr.dtype.element_ty), mask=mask)


def sum_topk(rows: torch.Tensor, top_k: int, dtype: torch.dtype) -> torch.Tensor:
    """Contiguous ``[T * k, H]`` -> ``[T, H]`` in ``dtype`` (fp32 accumulation)."""
    n, hidden = rows.shape
    t = n // top_k
    out = torch.empty((t, hidden), dtype=dtype, device=rows.device)
    if t:
        block = min(1024, triton.next_power_of_2(hidden))
        _sum_topk_kernel[(t, triton.cdiv(hidden, block))](rows, out, hidden, TOP_K=top_k,
                                                           BLOCK_H=block)
    return out
