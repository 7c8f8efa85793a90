"""Expert-parallel token dispatch: an all-to-all over the expert-parallel group.

Rank ``r`` holds experts ``[r * E_local, (r + 1) * E_local)``. :func:`a2a_dispatch` sends each
(token, expert) row to the rank that owns its expert and groups the rows a rank receives by
its local experts; :func:`a2a_combine` runs the exchange backwards and takes each token's
weighted sum on the rank the token came from. Both go through the platform's
:class:`~anyware.plugin.Communicator` (``all_to_all`` with split sizes).

Graph safety: the split sizes of an all-to-all are host values, so the per-rank row counts
(exchanged first, with an equal-split all-to-all) are read on the host once per layer. This
dispatcher therefore synchronises with the device and cannot run inside a captured graph;
a platform that captures expert-parallel layers needs a dispatcher with fixed-capacity
buffers (rows padded to a worst case) instead.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from anyware.kernels.reference.moe import expert_counts
from anyware.plugin import Communicator, Dispatched, MoESpec


class A2AHandle(NamedTuple):
    """What :func:`a2a_combine` needs. ``row_expert`` (index 1, as for the local dispatcher)
    is the local expert of each received row, in the dispatched order."""

    recv_order: torch.Tensor  # received row -> dispatched position (stable sort by expert)
    row_expert: torch.Tensor
    inverse: torch.Tensor  # (token, j) -> position among the rows this rank sent
    send_splits: list[int]
    recv_splits: list[int]
    send_weights: torch.Tensor  # fp32 routing weight of each sent row
    num_tokens: int
    top_k: int


def a2a_dispatch(comm: Communicator, spec: MoESpec, hidden: torch.Tensor,
                 topk_weights: torch.Tensor, topk_ids: torch.Tensor) -> Dispatched:
    t, k = topk_ids.shape
    e_local, ep = spec.num_local_experts, spec.ep_size
    flat = topk_ids.reshape(-1).long()
    order = torch.argsort(flat, stable=True)  # by global expert, hence by destination rank
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=order.device)
    send_counts = expert_counts(flat, spec.num_experts).view(ep, e_local).sum(1)
    recv_counts = comm.all_to_all(send_counts)
    counts = torch.cat([send_counts, recv_counts]).tolist()  # host sync: the split sizes
    send, recv = counts[:ep], counts[ep:]
    weights = topk_weights.reshape(-1)[order].float()
    rows = comm.all_to_all(hidden[order // k], recv, send)
    r_expert = comm.all_to_all(flat[order] % e_local, recv, send)
    r_weights = comm.all_to_all(weights, recv, send)
    recv_order = torch.argsort(r_expert, stable=True)
    return Dispatched(
        hidden=rows[recv_order],
        expert_counts=expert_counts(r_expert, e_local),
        weights=r_weights[recv_order],
        handle=A2AHandle(recv_order, r_expert[recv_order], inverse, send, recv, weights, t, k),
    )


def a2a_combine(comm: Communicator, expert_out: torch.Tensor, dispatched: Dispatched) -> torch.Tensor:
    h: A2AHandle = dispatched.handle
    received = torch.empty_like(expert_out)
    received[h.recv_order] = expert_out  # back to the order the rows arrived in
    sent = comm.all_to_all(received, h.send_splits, h.recv_splits)  # back to their tokens' ranks
    rows = sent[h.inverse].float().view(h.num_tokens, h.top_k, expert_out.shape[1])
    w = h.send_weights[h.inverse].view(h.num_tokens, h.top_k, 1)
    return (rows * w).sum(1).to(expert_out.dtype)
