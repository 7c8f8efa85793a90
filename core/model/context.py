"""`ModelContext`: what model layers receive instead of reaching for a device or a vendor."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from anyware.plugin import AttentionBackend, KernelOps


@dataclass
class ModelContext:
    ops: KernelOps
    attention: AttentionBackend
    dtype: torch.dtype
    device: torch.device
