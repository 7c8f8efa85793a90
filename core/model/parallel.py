"""Tensor-parallel layers: each rank holds a slice of a weight and reads only that slice.

* :func:`column_parallel`: output rows split over ranks (fused q/k/v or gate/up: every part
  split separately, so each rank's fused weight is its own q, k, v); no communication.
* :class:`RowParallelLinear`: input columns split; partial products all-reduced through the
  group's :class:`~anyware.plugin.Communicator`; the bias is added once, after the sum.
* :class:`VocabParallelEmbedding`: vocabulary rows split (padded to a multiple of the ranks);
  a rank embeds the ids it holds, zeros the others, and the group all-reduces. As the LM
  head (or tied to it) it computes its slice of the logits and all-gathers them, so every
  rank holds the full ``[L, V]`` logits (rank 0 samples; the others discard them).

KV heads split over ranks when there are at least as many as ranks, else each rank holds
the one KV head its query heads use (:func:`rank_heads`, :func:`kv_head_start`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from anyware.model.context import ModelContext, TensorParallel
from anyware.model.layers import Linear, Shard
from anyware.model.weights import CheckpointTensor
from torch import nn


def rank_heads(num_heads: int, num_kv_heads: int, world_size: int) -> tuple[int, int]:
    """Attention heads held by one of ``world_size`` tensor-parallel ranks: query heads split
    evenly; KV heads split too, or replicated (one per rank) when there are fewer than ranks."""
    if num_heads % world_size:
        raise ValueError(f"{num_heads} attention heads do not split over {world_size} ranks")
    if num_kv_heads >= world_size:
        if num_kv_heads % world_size:
            raise ValueError(f"{num_kv_heads} KV heads do not split over {world_size} ranks")
        return num_heads // world_size, num_kv_heads // world_size
    if world_size % num_kv_heads:
        raise ValueError(f"{num_kv_heads} KV heads cannot be replicated over {world_size} ranks")
    return num_heads // world_size, 1


def kv_head_start(num_kv_heads: int, tp: TensorParallel) -> int:
    """The first (global) KV head rank ``tp.rank`` holds. With fewer KV heads than ranks,
    ``size / num_kv_heads`` consecutive ranks share one: the head their query heads use."""
    if num_kv_heads >= tp.size:
        return tp.rank * (num_kv_heads // tp.size)
    return tp.rank // (tp.size // num_kv_heads)


def column_parallel(in_features: int, parts: dict[str, tuple[int, int]] | int, bias: bool,
                    ctx: ModelContext) -> Linear:
    """A linear layer whose output rows are split over ranks. ``parts``: the local size and
    the first checkpoint row this rank reads, per fused part (``{"q": (size, src), ...}``,
    laid out in that order), or the full output size of an unfused layer."""
    if isinstance(parts, int):
        size = ctx.tp.split(parts, "output features")
        return Linear(in_features, size, bias, ctx.dtype, {None: Shard(0, size, ctx.tp.rank * size)})
    shards, dst = {}, 0
    for name, (size, src) in parts.items():
        shards[name] = Shard(dst, size, src)
        dst += size
    return Linear(in_features, dst, bias, ctx.dtype, shards)


class RowParallelLinear(Linear):
    """``y = sum over ranks of x_r @ W_r^T (+ b)``: ``x_r`` is this rank's slice of the input
    features (the output of a column-parallel layer)."""

    def __init__(self, in_features: int, out_features: int, bias: bool, ctx: ModelContext) -> None:
        size = ctx.tp.split(in_features, "input features")
        super().__init__(size, out_features, bias, ctx.dtype,
                         {None: Shard(0, size, ctx.tp.rank * size)}, split_dim=1)
        self.tp = ctx.tp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.tp.all_reduce(self.matmul(x, None))
        return y if self.bias is None else y + self.bias


class VocabParallelEmbedding(nn.Module):
    """Rows ``[start, start + num_local)`` of a ``[vocab, hidden]`` table on this rank, padded
    to ``ceil(vocab / ranks)`` rows (the padding is zero and never read)."""

    def __init__(self, vocab_size: int, hidden_size: int, ctx: ModelContext) -> None:
        super().__init__()
        tp = self.tp = ctx.tp
        self.vocab_size = vocab_size
        self.rows = -(-vocab_size // tp.size)
        self.start = tp.rank * self.rows
        self.num_local = max(0, min(self.rows, vocab_size - self.start))
        self.weight = nn.Parameter(torch.empty(self.rows, hidden_size, dtype=ctx.dtype),
                                   requires_grad=False)

    def load(self, param_name: str, tensor, shard: str | None) -> None:
        tensor = CheckpointTensor.of(tensor)
        if param_name != "weight" or shard is not None:
            raise KeyError(f"embedding has no {param_name} {shard or ''}".strip())
        if tensor.shape != (self.vocab_size, self.weight.shape[1]):
            raise ValueError(f"shape {tensor.shape} != expected "
                             f"{(self.vocab_size, self.weight.shape[1])}")
        self.weight[self.num_local:].zero_()
        if self.num_local:
            self.weight[: self.num_local].copy_(tensor.narrow(0, self.start, self.num_local))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.tp.size == 1:
            return F.embedding(ids, self.weight)
        local = ids - self.start
        outside = (local < 0) | (local >= self.num_local)
        x = F.embedding(local.masked_fill(outside, 0), self.weight)
        return self.tp.all_reduce(x.masked_fill(outside[:, None], 0))

    def full_weight(self) -> torch.Tensor:
        """The whole ``[vocab, hidden]`` table, gathered from every rank (a collective: every
        rank of the group calls it at the same point; an EAGLE-3 head on rank 0 shares it)."""
        if self.tp.size == 1:
            return self.weight
        return self.tp.comm.all_gather(self.weight)[: self.vocab_size]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """fp32 ``[L, vocab]`` logits of hidden states ``x [L, hidden]`` against this table,
        gathered from every rank."""
        out = F.linear(x, self.weight).float()
        if self.tp.size == 1:
            return out
        return self.tp.comm.all_gather(out, dim=-1)[:, : self.vocab_size]
