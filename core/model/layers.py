"""Building blocks: linear layers with fused-shard loading, RMSNorm through the platform ops."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from anyware.model.context import ModelContext
from torch import nn


class Linear(nn.Module):
    """``y = x @ W^T (+ b)``. ``shards`` names the output slices a fused weight is loaded from
    (e.g. q/k/v into one ``qkv`` weight): ``{"q": (start, size), ...}``."""

    def __init__(self, in_features: int, out_features: int, bias: bool, dtype: torch.dtype,
                 shards: dict[str, tuple[int, int]] | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features, dtype=dtype), requires_grad=False)
        self.bias = nn.Parameter(torch.empty(out_features, dtype=dtype), requires_grad=False) if bias else None
        self.shards = shards or {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def load(self, param_name: str, tensor: torch.Tensor, shard: str | None) -> None:
        target = self.weight if param_name == "weight" else self.bias
        if target is None:
            raise KeyError(f"layer has no {param_name}")
        if shard is None:
            if target.shape != tensor.shape:
                raise ValueError(f"shape {tuple(tensor.shape)} != expected {tuple(target.shape)}")
            target.copy_(tensor)
            return
        start, size = self.shards[shard]
        if tensor.shape[0] != size:
            raise ValueError(f"shard {shard}: {tensor.shape[0]} rows, expected {size}")
        target[start : start + size].copy_(tensor)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, ctx: ModelContext) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(dim, dtype=ctx.dtype), requires_grad=False)
        self.eps = eps
        self.ops = ctx.ops

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None):
        if residual is None:
            return self.ops.rms_norm(x, self.weight, self.eps)
        return self.ops.fused_add_rms_norm(x, residual, self.weight, self.eps)
