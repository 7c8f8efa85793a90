"""Execution strategies: how the core's step runs on a platform (rule 10).

The core owns the step loop and the model; a strategy only decides *how* a forward runs:
eagerly ("eager"), by replaying graphs captured per shape bucket ("graphs"), or as programs
compiled for padded shape buckets ("compiled"). Platforms return one from
``Platform._execution_strategy``; a platform that declares ``graph_capture`` /
``compiled_execution`` must return a strategy whose ``kind`` is the one asked for.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Protocol

import torch
from anyware.plugin.forward import ForwardBatch, ForwardMode
from anyware.plugin.ops.attention import AttentionBackend, KVCache
from anyware.plugin.ops.kernels import SamplingTensors
from anyware.plugin.padding import Bucket


@dataclass
class StepSample:
    """What :meth:`ExecutionStrategy.run_and_sample` returns, one entry per logit row:
    ``tokens`` int64 ``[L]`` and ``logprobs`` fp32 ``[L]`` (each token's log-probability under
    the raw logits, before temperature and filtering)."""

    tokens: torch.Tensor
    logprobs: torch.Tensor


class StepProgram(Protocol):
    """What the core hands a strategy: the model forward, the attention backend, and the one
    padding entry point (:mod:`anyware.plugin.padding` states the semantics).

    A strategy that runs fixed shapes (graphs, compiled programs) captures or compiles on
    ``dummy(mode, bucket)`` and, each step, runs ``pad(batch, bucket)`` through it. A
    ``bucket.pages`` of ``None`` means the program's full per-request page-table width (the
    most pages one request can hold), so a padded batch fits every captured shape.

    kv_cache: the KV cache ``forward`` reads and writes. A compiled strategy passes it into
        its programs and takes the new state back (replacing ``kv_cache.kv`` / ``.k`` / ``.v``
        entries), so no write happens outside what the compiler sees.
    model: the ``torch.nn.Module`` whose parameters and buffers ``forward`` uses, when there
        is one (``None`` otherwise): a compiled strategy passes them as program inputs
        instead of baking them in as constants.
    verify_tokens: the most new tokens per request of the short multi-token steps this
        program runs (``k + 1`` for a target verifying ``k`` drafts; 2 for a draft model's
        catch-up over the tokens accepted since its last step), or 0 when it runs none. A
        graph strategy may capture a VERIFY graph per request bucket of this width
        (``dummy(VERIFY, Bucket(tokens=n * verify_tokens, requests=n))``) and replay any
        batch whose requests each carry 1 to ``verify_tokens`` new tokens through it. A
        program without the attribute counts as 0.
    max_requests: the most requests one forward of this program carries (its page-table
        rows: the running-request cap, which the core resolves once the KV pool is sized, so
        it may be below ``AttentionSpec.max_batch_size``). A strategy sizes its request
        buckets up to it (no batch is wider) and not beyond. A program without the attribute
        (2.4 and earlier) counts as ``attention.spec.max_batch_size``.
    """

    attention: AttentionBackend
    kv_cache: KVCache
    model: torch.nn.Module | None
    verify_tokens: int
    max_requests: int

    def forward(self, batch: ForwardBatch) -> torch.Tensor:
        """Run the model; returns logits ``[len(batch.logits_indices), vocab]`` (fp32)."""

    def pad(self, batch: ForwardBatch, bucket: Bucket) -> ForwardBatch:
        """``batch`` (any mode) padded to ``bucket``: :func:`anyware.plugin.pad_batch` with
        the program's full page-table width. Never modifies ``batch``."""

    def dummy(self, mode: ForwardMode, bucket: Bucket) -> ForwardBatch:
        """A batch of ``mode`` shaped like ``bucket`` that reads and writes only the scratch
        page: :func:`anyware.plugin.dummy_batch` on the program's device."""


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

    def run_and_sample(self, batch: ForwardBatch, sampling: SamplingTensors) -> StepSample | None:
        """Optional: run ``batch`` and draw one token per logit row in the same program
        (``KernelOps.sample``'s semantics, noise included; ``sampling`` has a row per logit
        row), so only the ids and their logprobs leave the device. The core calls it instead
        of ``run`` + its sampler only for steps that need nothing else from the logits (no
        penalties, no top logprobs, no prompt logprobs, no verify rows). Returns ``None`` to
        decline before running anything (the default): the core then calls ``run``."""
        return None

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
