"""Collectives between ranks, and a torch.distributed implementation platforms can reuse."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch


class Communicator(ABC):
    """Collectives over one process group. Tensors live on the platform's device.

    All operations are collective: every rank of the group calls them in the same order with
    tensors of the same shape and dtype (``all_to_all`` splits excepted).

    Built once per rank by the core (``Platform._communicator`` or a contributed class, as
    ``cls(rank, world_size)``) after init_device and after the launcher initialised the process
    group. Each operation increments ``self.calls``. An operation may not initialise or
    destroy the group, and may not change tensors other than its input and result.
    """

    name: ClassVar[str] = "abstract"
    priority: ClassVar[int] = 0  # among contributed communicators, highest wins

    def __init__(self, rank: int, world_size: int) -> None:
        self.rank = rank
        self.world_size = world_size
        self.calls = 0

    @abstractmethod
    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        """Sum over ranks; returns the result (may reuse ``x``'s storage)."""

    @abstractmethod
    def all_gather(self, x: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """Concatenate every rank's ``x`` along ``dim`` in rank order."""

    @abstractmethod
    def reduce_scatter(self, x: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """Sum over ranks, then return this rank's ``1/world_size`` chunk along ``dim``."""

    @abstractmethod
    def all_to_all(
        self,
        x: torch.Tensor,
        output_split_sizes: list[int] | None = None,
        input_split_sizes: list[int] | None = None,
    ) -> torch.Tensor:
        """Send chunk ``j`` of ``x`` (dim 0) to rank ``j``; return received chunks in rank order.

        Without split sizes the chunks are equal (``x.shape[0] / world_size`` rows). With
        them, ``input_split_sizes[j]`` rows go to rank ``j`` and ``output_split_sizes[i]``
        rows arrive from rank ``i``; sizes may differ between ranks and may be zero
        (expert-parallel dispatch; the conformance collectives tier checks both)."""

    @abstractmethod
    def broadcast(self, x: torch.Tensor, src: int = 0) -> torch.Tensor:
        """Every rank receives ``src``'s ``x`` (in place)."""

    @abstractmethod
    def barrier(self) -> None:
        """Wait until every rank arrives."""

    def destroy(self) -> None:  # noqa: B027 - optional
        """Release what the communicator created (not the default group, which the launcher
        owns). Called once, when the communicator is no longer needed. Default: nothing."""


class TorchDistributedCommunicator(Communicator):
    """`Communicator` over an initialised ``torch.distributed`` default group.

    A platform passes its backend name (its ``Platform.dist_backend``); the process group must
    already be initialised (``init_process_group``) by the launcher.
    """

    name = "torch.distributed"

    def __init__(self, rank: int, world_size: int, group: object | None = None) -> None:
        super().__init__(rank, world_size)
        import torch.distributed as dist

        if not dist.is_initialized():
            raise RuntimeError("torch.distributed is not initialised; call init_process_group")
        self._dist = dist
        self._group = group

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self._dist.all_reduce(x, group=self._group)
        return x

    def all_gather(self, x: torch.Tensor, dim: int = 0) -> torch.Tensor:
        self.calls += 1
        parts = [torch.empty_like(x) for _ in range(self.world_size)]
        self._dist.all_gather(parts, x.contiguous(), group=self._group)
        return torch.cat(parts, dim=dim)

    def reduce_scatter(self, x: torch.Tensor, dim: int = 0) -> torch.Tensor:
        self.calls += 1
        total = x.clone()
        self._dist.all_reduce(total, group=self._group)
        return total.chunk(self.world_size, dim=dim)[self.rank].contiguous()

    def all_to_all(self, x, output_split_sizes=None, input_split_sizes=None):
        # all_to_all_single: uneven splits work on every backend (gloo's list all_to_all
        # needs equal chunk shapes)
        self.calls += 1
        if output_split_sizes is None:
            out = torch.empty_like(x)
        else:
            out = x.new_empty((sum(output_split_sizes), *x.shape[1:]))
        self._dist.all_to_all_single(out, x.contiguous(), output_split_sizes, input_split_sizes,
                                     group=self._group)
        return out

    def broadcast(self, x: torch.Tensor, src: int = 0) -> torch.Tensor:
        self.calls += 1
        self._dist.broadcast(x, src=src, group=self._group)
        return x

    def barrier(self) -> None:
        self.calls += 1
        self._dist.barrier(group=self._group)
