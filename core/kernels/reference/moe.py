"""MoE reference: softmax top-k routing, a single-device token dispatcher, looped experts."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from anyware.plugin import Dispatched, MoEExperts, TokenDispatcher


def moe_route(router_logits: torch.Tensor, top_k: int, renormalize: bool):
    probs = torch.softmax(router_logits.float(), dim=-1)
    weights, ids = probs.topk(top_k, dim=-1)
    if renormalize:
        weights = weights / weights.sum(-1, keepdim=True)
    return weights, ids.to(torch.int32)


class LocalTokenDispatcher(TokenDispatcher):
    """All experts on this device: sort (token, expert) pairs by expert; combine by index_add."""

    name = "local"

    def dispatch(self, hidden, topk_weights, topk_ids) -> Dispatched:
        t, k = topk_ids.shape
        flat = topk_ids.reshape(-1).long()
        order = torch.argsort(flat, stable=True)
        token_of = order // k
        counts = torch.bincount(flat, minlength=self.num_experts)
        return Dispatched(
            hidden=hidden[token_of],
            expert_counts=counts,
            weights=topk_weights.reshape(-1)[order].float(),
            handle=(token_of, t),
        )

    def combine(self, expert_out, dispatched: Dispatched) -> torch.Tensor:
        token_of, t = dispatched.handle
        out = torch.zeros((t, expert_out.shape[-1]), dtype=torch.float32, device=expert_out.device)
        out.index_add_(0, token_of, expert_out.float())
        return out.to(expert_out.dtype)


class ReferenceMoEExperts(MoEExperts):
    name = "torch-reference"

    def forward(self, dispatched: Dispatched, w13, w2) -> torch.Tensor:
        self.calls += 1
        x = dispatched.hidden
        out = torch.empty((x.shape[0], w2.shape[1]), dtype=x.dtype, device=x.device)
        start = 0
        for e, n in enumerate(dispatched.expert_counts.tolist()):
            if n == 0:
                continue
            rows = x[start : start + n].float()
            gate_up = rows @ w13[e].float().t()
            inter = gate_up.shape[-1] // 2
            h = F.silu(gate_up[:, :inter]) * gate_up[:, inter:]
            y = (h @ w2[e].float().t()) * dispatched.weights[start : start + n, None]
            out[start : start + n] = y.to(x.dtype)
            start += n
        return out
