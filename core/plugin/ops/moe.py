"""Mixture-of-experts as router -> TokenDispatcher -> experts -> combine.

The router is :meth:`KernelOps.moe_route`. A :class:`TokenDispatcher` moves each token's
hidden state to the ranks/experts it was routed to (local sort on one device, all-to-all
under expert parallelism) and brings the results back; it is separate from the
:class:`~anyware.plugin.ops.comm.Communicator`. :class:`MoEExperts` computes the experts'
gated MLPs on dispatched tokens.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch


@dataclass
class Dispatched:
    """Tokens grouped by local expert.

    hidden: ``[N, H]`` rows sorted by local expert id.
    expert_counts: int64 ``[E_local]`` rows per local expert (in order).
    weights: fp32 ``[N]`` routing weight of each row.
    handle: dispatcher-private state needed by ``combine``.
    """

    hidden: torch.Tensor
    expert_counts: torch.Tensor
    weights: torch.Tensor
    handle: Any


class TokenDispatcher(ABC):
    """Moves routed tokens to their experts and back."""

    name: ClassVar[str]
    priority: ClassVar[int] = 0  # among contributed dispatchers, highest wins

    def __init__(self, num_experts: int, ep_rank: int = 0, ep_size: int = 1) -> None:
        if num_experts % ep_size:
            raise ValueError(f"{num_experts} experts do not split over {ep_size} ranks")
        self.num_experts = num_experts
        self.ep_rank = ep_rank
        self.ep_size = ep_size
        self.num_local_experts = num_experts // ep_size

    @abstractmethod
    def dispatch(
        self, hidden: torch.Tensor, topk_weights: torch.Tensor, topk_ids: torch.Tensor
    ) -> Dispatched:
        """hidden ``[T, H]``, topk ``[T, k]`` -> rows for this rank's experts."""

    @abstractmethod
    def combine(self, expert_out: torch.Tensor, dispatched: Dispatched) -> torch.Tensor:
        """expert_out ``[N, H]`` (already weighted or not: see ``MoEExperts``) -> ``[T, H]``:
        each token's weighted sum over its k experts."""


class MoEExperts(ABC):
    """Gated-MLP experts. w13: ``[E_local, 2I, H]`` (gate rows then up rows), w2: ``[E_local, H, I]``."""

    name: ClassVar[str]
    priority: ClassVar[int] = 0  # among contributed experts, highest wins

    def __init__(self) -> None:
        self.calls = 0

    @abstractmethod
    def forward(self, dispatched: Dispatched, w13: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
        """Returns ``[N, H]``: ``w2[e] @ (silu(gate) * up)`` for each row of expert ``e``,
        multiplied by the row's routing weight."""
