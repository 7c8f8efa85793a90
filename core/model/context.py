"""`ModelContext`: what model layers receive instead of reaching for a device or a vendor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from anyware.plugin import AttentionBackend, Communicator, KernelOps, MoEBackend, MoESpec


@dataclass(frozen=True)
class TensorParallel:
    """This rank's place in its tensor-parallel group. ``comm`` spans the group (None on one
    rank). ``expert_parallel``: MoE layers shard whole experts over the group (all-to-all
    dispatch) instead of splitting every expert's intermediate dimension."""

    rank: int = 0
    size: int = 1
    comm: Communicator | None = None
    expert_parallel: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.size:
            raise ValueError(f"tensor-parallel rank {self.rank} of {self.size} is invalid")
        if self.size > 1 and self.comm is None:
            raise ValueError(f"tensor parallelism over {self.size} ranks needs a communicator")

    def split(self, n: int, what: str) -> int:
        """``n / size``; a clear error when ``n`` does not split evenly."""
        if n % self.size:
            raise ValueError(f"{what} ({n}) does not split over {self.size} tensor-parallel "
                             f"ranks; choose a --tensor-parallel-size that divides it")
        return n // self.size

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.size == 1 else self.comm.all_reduce(x)


@dataclass
class ModelContext:
    """``moe`` builds the MoE backend for a layer spec (``PlatformDriver.moe_backend`` with the
    group's communicator); only MoE models call it, so dense models run on platforms without
    MoE support. ``tp``: the tensor-parallel group (one rank by default). ``quantization``:
    the linear-layer quantization the loader applies (``"fp8"``, :mod:`anyware.model.quant`),
    or ``None``."""

    ops: KernelOps
    attention: AttentionBackend
    dtype: torch.dtype
    device: torch.device
    moe: Callable[[MoESpec], MoEBackend] | None = None
    tp: TensorParallel = TensorParallel()
    quantization: str | None = None
