"""Building blocks: linear layers with fused-shard and tensor-parallel loading, RMSNorm
through the platform ops. The tensor-parallel variants live in :mod:`anyware.model.parallel`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from anyware.kernels.reference.quant import quantize_fp8_rows
from anyware.model.context import ModelContext
from anyware.model.weights import CheckpointTensor
from anyware.plugin import Fp8Rows
from torch import nn


@dataclass(frozen=True)
class Shard:
    """Where one checkpoint tensor goes in a layer's weight, along the layer's split dim:
    elements ``[src, src + size)`` of the checkpoint fill ``[dst, dst + size)`` of the weight."""

    dst: int
    size: int
    src: int = 0


class Linear(nn.Module):
    """``y = x @ W^T (+ b)``. ``shards`` names the slices a weight is loaded from, e.g. q/k/v
    into one fused ``qkv`` weight: ``{"q": Shard(...), ...}``; the key ``None`` is for a
    checkpoint tensor that fills the weight alone (by default: all of it). ``split_dim``:
    the weight dim the shards index (0: output rows; 1: input columns, where a bias is never
    split)."""

    def __init__(self, in_features: int, out_features: int, bias: bool, dtype: torch.dtype,
                 shards: dict[str | None, Shard] | None = None, split_dim: int = 0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features, dtype=dtype), requires_grad=False)
        self.bias = nn.Parameter(torch.empty(out_features, dtype=dtype), requires_grad=False) if bias else None
        self.shards = shards or {}
        self.split_dim = split_dim

        # set by quantize_fp8: per-output-channel scales of an e4m3 weight, and the ops that
        # run it (KernelOps.fp8_linear)
        self.register_buffer("weight_scale", None, persistent=False)
        self.quant_ops = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.matmul(x, self.bias)

    def matmul(self, x: torch.Tensor | Fp8Rows, bias: torch.Tensor | None) -> torch.Tensor:
        """``x @ W^T (+ bias)``, through the platform's fp8 linear once quantised; ``x`` may
        then be :class:`~anyware.plugin.Fp8Rows` ``[T, K]`` from the op that produced it."""
        if self.weight_scale is None:
            return F.linear(x, self.weight, bias)
        if isinstance(x, Fp8Rows):
            return self.quant_ops.fp8_linear(x, self.weight, self.weight_scale, bias)
        lead = x.shape[:-1]
        y = self.quant_ops.fp8_linear(x.reshape(-1, x.shape[-1]), self.weight, self.weight_scale,
                                      bias)
        return y.reshape(*lead, y.shape[-1])

    @torch.no_grad()
    def quantize_fp8(self, ops) -> None:
        """Replace the loaded weight by its e4m3 quantisation with per-output-channel scales
        (``anyware.kernels.reference.quantize_fp8_rows``); ``ops.fp8_linear`` runs it."""
        q, scale = quantize_fp8_rows(self.weight)
        self.weight = nn.Parameter(q, requires_grad=False)
        self.weight_scale = scale
        self.quant_ops = ops

    def load(self, param_name: str, tensor, shard: str | None) -> None:
        tensor = CheckpointTensor.of(tensor)
        target = self.weight if param_name == "weight" else self.bias
        if target is None:
            raise KeyError(f"layer has no {param_name}")
        spec = self.shards.get(shard)
        if shard is not None and spec is None:
            raise KeyError(f"layer has no shard {shard!r} (known: {sorted(map(str, self.shards))})")
        dim = self.split_dim if param_name == "weight" else 0
        if spec is None or (param_name == "bias" and self.split_dim != 0):
            part, dest = tensor.full(), target
        else:
            part, dest = tensor.narrow(dim, spec.src, spec.size), target.narrow(dim, spec.dst, spec.size)
        if part.shape != dest.shape:
            raise ValueError(f"{param_name}{'' if shard is None else f' shard {shard}'}: shape "
                             f"{tuple(part.shape)} != expected {tuple(dest.shape)}")
        dest.copy_(part)


class RMSNorm(nn.Module):
    """``fp8_out`` (set by ``anyware.model.quant`` where the only consumer of the output is an
    fp8 projection and the ops quantise activations in their producers): the normed rows come
    back as :class:`~anyware.plugin.Fp8Rows` (``KernelOps.rms_norm_fp8`` and
    ``fused_add_rms_norm_fp8``)."""

    def __init__(self, dim: int, eps: float, ctx: ModelContext) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(dim, dtype=ctx.dtype), requires_grad=False)
        self.eps = eps
        self.ops = ctx.ops
        self.fp8_out = False

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None):
        if residual is None:
            if self.fp8_out:
                return self.ops.rms_norm_fp8(x, self.weight, self.eps)
            return self.ops.rms_norm(x, self.weight, self.eps)
        if self.fp8_out:
            return self.ops.fused_add_rms_norm_fp8(x, residual, self.weight, self.eps)
        return self.ops.fused_add_rms_norm(x, residual, self.weight, self.eps)
