"""`ModelWorker`: one model on one rank, with everything it needs to run forwards.

Given a model config, a configured platform on an initialised device, this rank's place in
its group and a KV budget, a worker builds the attention backend (for this rank's heads), the
model, the KV pool (in the backend's layout), the page table, the model runner and the
platform's execution strategy. The engine composes one for the target model; a draft model
is a second worker that shares the first one's page ids (``share_pages_with``), and a
tensor-parallel rank builds the same pieces in its own process. ``before_setup(worker)`` runs
once the KV pool exists and before the execution strategy captures graphs: opt-in model hooks
(an EAGLE-3 head and the target's hidden-state capture) go there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from anyware.executor.model_runner import ModelRunner
from anyware.memory import KVPool, PageTable, pages_for_budget
from anyware.model.config import ModelConfig
from anyware.model.context import ModelContext
from anyware.model.loader import build_model
from anyware.plugin import (
    AttentionSpec,
    ExecutionStrategy,
    ForwardBatch,
    PlatformConfig,
    SamplingTensors,
    StepSample,
)
from anyware.request import ScheduledBatch
from anyware.runtime import PlatformDriver


@dataclass(frozen=True)
class KVBudget:
    """How many bytes the KV pool may take: ``bytes`` when set, else ``mem_fraction`` of the
    device's free memory (after the weights) minus ``reserve_bytes`` for activations, as the
    platform computes it (``Platform.kv_cache_budget``)."""

    bytes: int | None = None
    mem_fraction: float = 0.85
    reserve_bytes: int = 0


@dataclass(frozen=True)
class WorkerConfig:
    """One model on one rank of a group of ``world_size`` ranks. ``verify_tokens``: the most
    new tokens per request of its short multi-token steps (``StepProgram.verify_tokens``)."""

    model: ModelConfig
    model_path: Path | None
    load_format: str = "auto"
    seed: int = 0
    max_running_requests: int = 256
    rank: int = 0
    world_size: int = 1
    show_progress: bool = True
    verify_tokens: int = 0


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


class ModelWorker:
    def __init__(self, cfg: WorkerConfig, platform: PlatformDriver, pcfg: PlatformConfig,
                 device: torch.device, budget: KVBudget,
                 share_pages_with: ModelWorker | None = None,
                 before_setup: Callable[[ModelWorker], None] | None = None) -> None:
        if cfg.world_size > 1:
            raise NotImplementedError(
                f"world size {cfg.world_size}: the models are single-rank in this version "
                "(tensor parallelism is not built yet); run with one rank")
        mcfg = cfg.model
        self.cfg, self.platform, self.device = cfg, platform, device
        self.page_size = pcfg.page_size
        heads, kv_heads = rank_heads(mcfg.num_heads, mcfg.num_kv_heads, cfg.world_size)
        self.attention = platform.attention_backend(AttentionSpec(
            mcfg.num_layers, heads, kv_heads, mcfg.head_dim, mcfg.head_dim, pcfg.dtype,
            cfg.max_running_requests, mcfg.context_len))
        ctx = ModelContext(platform.ops(), self.attention, pcfg.dtype, device,
                           moe=platform.moe_backend)
        self.model = build_model(mcfg, ctx, cfg.model_path, cfg.load_format, cfg.seed,
                                 cfg.show_progress)
        platform.model_loaded(self.model)

        layout = self.attention.kv_layout(pcfg.page_size, pcfg.kv_cache_dtype)
        if share_pages_with is not None:  # same page ids, own pool (a draft model)
            self.page_table = share_pages_with.page_table
            self.num_pages = share_pages_with.num_pages
        else:
            max_pages_per_req = -(-mcfg.context_len // pcfg.page_size)
            self.page_table = PageTable(cfg.max_running_requests, max_pages_per_req, device)
            self.num_pages = self._num_pages(layout, budget, max_pages_per_req)
        self.pool = KVPool(platform, layout, mcfg.num_layers, self.num_pages)
        if before_setup is not None:  # e.g. opt-in model hooks, before any graph capture
            before_setup(self)
        self.runner = ModelRunner(self.model, self.attention, self.pool, self.page_table,
                                  pcfg.page_size, device, cfg.verify_tokens)
        self.strategy = platform.execution_strategy()
        self.strategy.setup(self.runner)
        # whether the strategy may sample inside its programs (it overrides run_and_sample)
        self.samples_in_step = (type(self.strategy).run_and_sample
                                is not ExecutionStrategy.run_and_sample)

    def _num_pages(self, layout, budget: KVBudget, max_pages_per_req: int) -> int:
        needed = self.cfg.max_running_requests * max_pages_per_req + 1
        if budget.bytes is not None:
            nbytes = budget.bytes
        else:
            nbytes = self.platform.kv_cache_budget(budget.mem_fraction, budget.reserve_bytes)
        pages = min(pages_for_budget(nbytes, layout, self.cfg.model.num_layers), needed)
        if pages < 2:
            raise MemoryError(
                f"KV cache budget of {nbytes} bytes holds no pages; lower the model size or "
                f"raise --mem-fraction / kv_cache_bytes")
        return pages

    @property
    def future(self):
        """Tokens sampled by steps still in flight, by page-table row (``FutureTokens``)."""
        return self.runner.future

    def forward(self, batch: ScheduledBatch) -> torch.Tensor:
        """Queue ``batch``'s forward through the execution strategy; returns its logits
        (device, fp32, one row per logit row of the batch) without waiting for them."""
        return self.run(self.runner.build_batch(batch))

    def run(self, batch: ForwardBatch) -> torch.Tensor:
        return self.strategy.run(batch)

    def forward_sampled(self, batch: ScheduledBatch, sampling: SamplingTensors) -> StepSample | None:
        """``batch``'s forward and its draw in one program when the execution strategy
        offers it (``ExecutionStrategy.run_and_sample``); ``None``: nothing ran, call
        :meth:`forward`."""
        return self.strategy.run_and_sample(self.runner.build_batch(batch), sampling)

    def close(self) -> None:
        self.strategy.close()
