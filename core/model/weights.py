"""`CheckpointTensor`: one checkpoint tensor, read whole or in slices.

Under tensor or expert parallelism a rank needs only part of most tensors; reading through
``safetensors``' ``get_slice`` keeps each rank from materialising (and converting) the rest.
A layer asks for what it needs with :meth:`CheckpointTensor.narrow`; :meth:`full` reads it all.
"""

from __future__ import annotations

from typing import Any

import torch


class CheckpointTensor:
    """A lazily read tensor: a safetensors slice handle, or an in-memory tensor (tests)."""

    def __init__(self, source: Any) -> None:
        self._src = source
        if isinstance(source, torch.Tensor):
            self.shape = tuple(source.shape)
        else:  # safetensors PySafeSlice
            self.shape = tuple(source.get_shape())

    @classmethod
    def of(cls, value: Any) -> CheckpointTensor:
        return value if isinstance(value, CheckpointTensor) else cls(value)

    def full(self) -> torch.Tensor:
        src = self._src
        return src if isinstance(src, torch.Tensor) else src[:]

    def narrow(self, dim: int, start: int, size: int) -> torch.Tensor:
        """Elements ``[start, start + size)`` along ``dim`` (only those are read)."""
        if start < 0 or start + size > self.shape[dim]:
            raise ValueError(f"slice [{start}, {start + size}) of dim {dim} is outside shape "
                             f"{self.shape}")
        if isinstance(self._src, torch.Tensor):
            return self._src.narrow(dim, start, size)
        index = (slice(None),) * dim + (slice(start, start + size),)
        return self._src[index]

    def __getitem__(self, index) -> torch.Tensor:
        """Index as a tensor (``t[e]``, ``t[e, :i]``); reads only the selected part."""
        return self._src[index]
