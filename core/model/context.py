"""`ModelContext`: what model layers receive instead of reaching for a device or a vendor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from anyware.plugin import AttentionBackend, KernelOps, MoEBackend, MoESpec


@dataclass
class ModelContext:
    """``moe`` builds the MoE backend for a layer spec (``PlatformDriver.moe_backend``); only MoE
    models call it, so dense models run on platforms without MoE support."""

    ops: KernelOps
    attention: AttentionBackend
    dtype: torch.dtype
    device: torch.device
    moe: Callable[[MoESpec], MoEBackend] | None = None
