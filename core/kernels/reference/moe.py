"""MoE reference (the oracle): routing, a single-rank sort dispatcher, grouped expert GEMMs and
a weighted combine, all as device-side torch ops (no host sync, no loop over tokens).

The stage functions are usable on their own (the Triton backend reuses routing and the
dispatcher; tests use :func:`moe_dense` as an independent check).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from anyware.kernels.reference.quant import quantize_fp8_rows
from anyware.plugin import Dispatched, MoEBackend


def moe_route(router_logits: torch.Tensor, top_k: int, renormalize: bool,
              scoring: str = "softmax", routed_scaling_factor: float = 1.0):
    """``router_logits [T, E]`` -> ``(weights fp32 [T, k], ids int32 [T, k])``: the k largest
    softmax (or sigmoid) scores, optionally renormalised to sum 1, then scaled."""
    logits = router_logits.float()
    if scoring == "softmax":
        scores = torch.softmax(logits, dim=-1)
    elif scoring == "sigmoid":
        scores = torch.sigmoid(logits)
    else:
        raise ValueError(f"router scoring {scoring!r}; known: softmax, sigmoid")
    weights, ids = scores.topk(top_k, dim=-1)
    if renormalize:
        weights = weights / weights.sum(-1, keepdim=True)
    if routed_scaling_factor != 1.0:
        weights = weights * routed_scaling_factor
    return weights, ids.to(torch.int32)


def expert_counts(flat_ids: torch.Tensor, num_experts: int) -> torch.Tensor:
    """int64 ``[E]`` rows per expert. ``scatter_add`` rather than ``bincount``, which reads the
    maximum id on the host on some devices."""
    counts = torch.zeros(num_experts, dtype=torch.int64, device=flat_ids.device)
    return counts.scatter_add_(0, flat_ids.long(), torch.ones_like(flat_ids, dtype=torch.int64))


def local_dispatch(hidden: torch.Tensor, topk_weights: torch.Tensor, topk_ids: torch.Tensor,
                   num_experts: int) -> Dispatched:
    """One rank: sort the ``T * k`` (token, expert) pairs by expert (stable, so rows of one
    expert keep token order). ``handle`` = (token of each row, expert of each row, inverse
    permutation, T, k)."""
    t, k = topk_ids.shape
    flat = topk_ids.reshape(-1).long()
    order = torch.argsort(flat, stable=True)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=order.device)
    token_of = order // k
    return Dispatched(
        hidden=hidden[token_of],
        expert_counts=expert_counts(flat, num_experts),
        weights=topk_weights.reshape(-1)[order].float(),
        handle=(token_of, flat[order], inverse, t, k),
    )


def local_combine(expert_out: torch.Tensor, dispatched: Dispatched) -> torch.Tensor:
    """Unsort the rows back to (token, j) order and take each token's weighted sum in fp32
    (deterministic: no atomics)."""
    _, _, inverse, t, k = dispatched.handle
    rows = expert_out[inverse].float().view(t, k, -1)
    w = dispatched.weights[inverse].view(t, k, 1)
    return (rows * w).sum(1).to(expert_out.dtype)


def _grouped_mm_ok(x: torch.Tensor, w13: torch.Tensor, w2: torch.Tensor) -> bool:
    """``F.grouped_mm`` runs on the CPU for row strides that are multiples of 16 bytes."""
    if x.device.type != "cpu":
        return False
    align = 16 // x.element_size()
    return all(n % align == 0 for n in (x.shape[1], w13.shape[1], w2.shape[1], w2.shape[2]))


def grouped_expert_mlp(hidden: torch.Tensor, counts: torch.Tensor, row_expert: torch.Tensor,
                       w13: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    """Rows sorted by expert -> ``w2[e] @ (silu(gate) * up)`` per row, computed in fp32 and
    returned in ``hidden.dtype``. Uses grouped GEMMs (``F.grouped_mm`` with device offsets)
    where available, else a masked loop over experts; neither reads counts on the host."""
    x = hidden.float()
    a, b = w13.float(), w2.float()
    inter = a.shape[1] // 2
    if _grouped_mm_ok(x, a, b):
        offs = counts.cumsum(0).to(torch.int32)
        gate_up = F.grouped_mm(x, a.transpose(1, 2), offs=offs)
        h = F.silu(gate_up[:, :inter]) * gate_up[:, inter:]
        out = F.grouped_mm(h, b.transpose(1, 2), offs=offs)
    else:
        out = torch.zeros((x.shape[0], b.shape[1]), dtype=torch.float32, device=x.device)
        for e in range(a.shape[0]):  # every row through every expert, kept where it belongs
            gate_up = x @ a[e].t()
            h = F.silu(gate_up[:, :inter]) * gate_up[:, inter:]
            out = torch.where((row_expert == e)[:, None], h @ b[e].t(), out)
    return out.to(hidden.dtype)


def _grouped_rows(x: torch.Tensor, w: torch.Tensor, counts: torch.Tensor,
                  row_expert: torch.Tensor) -> torch.Tensor:
    """fp32 ``x [N, K]`` (rows sorted by expert), fp32 ``w [E, O, K]`` -> ``[N, O]`` fp32 with
    row ``r`` = ``w[row_expert[r]] @ x[r]``: a grouped GEMM where available, else a masked
    loop over experts (no host read of ``counts``)."""
    if _grouped_mm_ok(x, w, w.transpose(1, 2)):
        return F.grouped_mm(x, w.transpose(1, 2), offs=counts.cumsum(0).to(torch.int32))
    out = torch.zeros((x.shape[0], w.shape[1]), dtype=torch.float32, device=x.device)
    for e in range(w.shape[0]):
        out = torch.where((row_expert == e)[:, None], x @ w[e].t(), out)
    return out


def grouped_expert_mlp_fp8(hidden: torch.Tensor, counts: torch.Tensor, row_expert: torch.Tensor,
                           w13: torch.Tensor, w2: torch.Tensor, w13_scale: torch.Tensor,
                           w2_scale: torch.Tensor) -> torch.Tensor:
    """The W8A8 fp8 expert MLP, exactly as ``MoEBackend.experts`` specifies it (the oracle):
    rows quantised per row, the e4m3 products accumulated in fp32 (exact products, fp32 sums)
    and scaled by ``row scale * w13_scale[e]`` (in that order), ``silu(gate) * up`` in fp32
    rounded to ``hidden.dtype``, that quantised per row, the down product scaled by ``row scale
    * w2_scale[e]``; in ``hidden.dtype``."""
    re = row_expert.long()
    inter = w13.shape[1] // 2
    xq, xs = quantize_fp8_rows(hidden)
    gate_up = _grouped_rows(xq.float(), w13.float(), counts, re)
    gate_up = gate_up * xs[:, None] * w13_scale.float()[re]
    h = (F.silu(gate_up[:, :inter]) * gate_up[:, inter:]).to(hidden.dtype)
    hq, hs = quantize_fp8_rows(h)
    out = _grouped_rows(hq.float(), w2.float(), counts, re)
    out = out * hs[:, None] * w2_scale.float()[re]
    return out.to(hidden.dtype)


@torch.no_grad()
def quantize_experts_fp8(w13: torch.Tensor, w2: torch.Tensor):
    """Model-dtype experts in a :class:`~anyware.plugin.MoEWeightLayout` -> ``(w13_q, w2_q,
    (w13_scale, w2_scale))``: e4m3 weights with fp32 per-output-row scales
    (:func:`~anyware.kernels.reference.quant.quantize_fp8_rows` over each expert's rows).
    One expert at a time, so the transient fp32 copy is one expert's, not the layer's. Zero
    padding rows stay zero (scale ``1e-12 / 448``)."""
    e = w13.shape[0]
    w13_q = torch.empty(w13.shape, dtype=torch.float8_e4m3fn, device=w13.device)
    w2_q = torch.empty(w2.shape, dtype=torch.float8_e4m3fn, device=w2.device)
    s13 = torch.empty(w13.shape[:2], dtype=torch.float32, device=w13.device)
    s2 = torch.empty(w2.shape[:2], dtype=torch.float32, device=w2.device)
    for i in range(e):
        w13_q[i], s13[i] = quantize_fp8_rows(w13[i])
        w2_q[i], s2[i] = quantize_fp8_rows(w2[i])
    return w13_q, w2_q, (s13, s2)


def moe_dense(hidden: torch.Tensor, topk_weights: torch.Tensor, topk_ids: torch.Tensor,
              w13: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    """Independent float64 check at small shapes: gathers each (token, j)'s expert weights.
    ``w13``/``w2`` in the dense layout (no padding needed: padding is zero)."""
    ids = topk_ids.long()
    a, b = w13.double()[ids], w2.double()[ids]  # [T, k, 2I, H], [T, k, H, I]
    gate_up = torch.einsum("tkoh,th->tko", a, hidden.double())
    inter = gate_up.shape[-1] // 2
    h = F.silu(gate_up[..., :inter]) * gate_up[..., inter:]
    y = torch.einsum("tkhi,tki->tkh", b, h)
    return (y * topk_weights.double()[..., None]).sum(1)


class ReferenceMoEBackend(MoEBackend):
    """Torch ops on any device and dtype (fp32 math); on one rank a local sort dispatcher,
    under expert parallelism (``spec.ep_size > 1``) the all-to-all dispatcher of
    :mod:`anyware.kernels.reference.moe_a2a` (not graph-safe: see there)."""

    name = "torch-reference"
    quantizations = frozenset({"fp8"})
    expert_parallel = True

    def route(self, router_logits):
        self.calls["route"] += 1
        s = self.spec
        return moe_route(router_logits, s.top_k, s.renormalize, s.scoring, s.routed_scaling_factor)

    def dispatch(self, hidden, topk_weights, topk_ids) -> Dispatched:
        self.calls["dispatch"] += 1
        if self.spec.ep_size > 1:
            from anyware.kernels.reference.moe_a2a import a2a_dispatch

            return a2a_dispatch(self.communicator, self.spec, hidden, topk_weights, topk_ids)
        return local_dispatch(hidden, topk_weights, topk_ids, self.spec.num_experts)

    def experts(self, dispatched: Dispatched, w13, w2, scales=None) -> torch.Tensor:
        """fp8 experts (``scales`` given): :func:`grouped_expert_mlp_fp8`, the contract's
        specification as torch ops."""
        self.calls["experts"] += 1
        row_expert = dispatched.handle[1]
        if scales is not None:
            return grouped_expert_mlp_fp8(dispatched.hidden, dispatched.expert_counts,
                                          row_expert, w13, w2, *scales)
        return grouped_expert_mlp(dispatched.hidden, dispatched.expert_counts, row_expert, w13, w2)

    def combine(self, expert_out, dispatched: Dispatched) -> torch.Tensor:
        self.calls["combine"] += 1
        if self.spec.ep_size > 1:
            from anyware.kernels.reference.moe_a2a import a2a_combine

            return a2a_combine(self.communicator, expert_out, dispatched)
        return local_combine(expert_out, dispatched)

