"""Execution strategies: how the core's step runs on a platform (rule 10).

The core owns the step loop and the model; a strategy only decides *how* a forward runs:
eagerly, by replaying graphs captured per batch-size bucket, or as compiled programs over
padded shape buckets. Platforms return one from ``Platform._execution_strategy``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Protocol

import torch
from anyware.plugin.forward import ForwardBatch
from anyware.plugin.ops.attention import AttentionBackend, KVCache


class StepProgram(Protocol):
    """What the core hands a strategy: the model forward and helpers to pad batches.

    kv_cache: the KV cache ``forward`` reads and writes. A compiled strategy passes it into
        its programs and takes the new state back (replacing ``kv_cache.kv`` / ``.k`` / ``.v``
        entries), so no write happens outside what the compiler sees.
    model: the ``torch.nn.Module`` whose parameters and buffers ``forward`` uses, when there
        is one (``None`` otherwise): a compiled strategy passes them as program inputs
        instead of baking them in as constants.
    """

    attention: AttentionBackend
    kv_cache: KVCache
    model: torch.nn.Module | None

    def forward(self, batch: ForwardBatch) -> torch.Tensor:
        """Run the model; returns logits ``[len(batch.logits_indices), vocab]`` (fp32)."""

    def dummy_decode_batch(self, batch_size: int) -> ForwardBatch:
        """A DECODE batch of ``batch_size`` rows writing only to the scratch page."""

    def pad_decode_batch(self, batch: ForwardBatch, batch_size: int) -> ForwardBatch:
        """``batch`` padded with dummy rows to ``batch_size`` rows."""

    def dummy_prefill_batch(self, num_tokens: int) -> ForwardBatch:
        """An EXTEND batch of one request with no prefix and ``num_tokens`` new tokens that
        reads and writes only the scratch page, marked ``padded_num_tokens=num_tokens``."""

    def pad_prefill_batch(self, batch: ForwardBatch, num_tokens: int) -> ForwardBatch:
        """A one-request EXTEND ``batch`` without prefix, its tokens padded to ``num_tokens``
        (``ForwardBatch.padded_num_tokens``); the page table widened to the full width."""


class ExecutionStrategy(ABC):
    """Runs forwards for the core. ``kind`` is "eager", "graphs" or "compiled".

    Built once per model by the core (eager) or by ``Platform._execution_strategy`` (graphs,
    compiled) after init_device and model loading; ``setup`` once after the KV cache exists;
    ``run`` once per step; ``close`` at shutdown. A strategy may not change what a forward
    computes: its output equals ``program.forward``'s on the same batch (conformance checks).
    """

    kind: ClassVar[str]

    def setup(self, program: StepProgram) -> None:
        """Called once after the model and KV cache exist: capture graphs or compile here.
        ``program`` is the core's model runner (:class:`StepProgram`)."""
        self.program = program

    @abstractmethod
    def run(self, batch: ForwardBatch) -> torch.Tensor:
        """Run one forward of ``batch``; returns what ``program.forward`` would. Called once
        per step, on the engine's thread; may not synchronise with the host beyond what the
        platform's kernels do."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release captured graphs / compiled programs. Called once, at shutdown; must
        tolerate a strategy whose ``setup`` never ran. Default: nothing."""


class EagerExecution(ExecutionStrategy):
    """Prepare the attention metadata and call the model forward directly."""

    kind = "eager"

    def run(self, batch: ForwardBatch) -> torch.Tensor:
        attn = self.program.attention
        attn.prepare(batch)
        attn.update(batch)
        return self.program.forward(batch)
