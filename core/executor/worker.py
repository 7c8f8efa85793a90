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
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from anyware.executor.model_runner import ModelRunner
from anyware.executor.plan import StepPlan
from anyware.memory import KVPool, PageTable, pages_for_budget
from anyware.memory.running_cap import AUTO_MIN, auto_max_running, max_running_bound
from anyware.model.config import ModelConfig
from anyware.model.context import ModelContext, TensorParallel
from anyware.model.loader import build_model
from anyware.model.parallel import rank_heads
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

__all__ = ["KVBudget", "ModelWorker", "WorkerConfig", "rank_heads"]


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
    # None: sized from the KV pool once it exists (anyware.memory.running_cap)
    max_running_requests: int | None = None
    rank: int = 0
    world_size: int = 1
    show_progress: bool = True
    verify_tokens: int = 0
    # MoE layers: shard whole experts over the ranks (all-to-all dispatch) instead of
    # splitting each expert's intermediate dimension
    expert_parallel: bool = False


class ModelWorker:
    def __init__(self, cfg: WorkerConfig, platform: PlatformDriver, pcfg: PlatformConfig,
                 device: torch.device, budget: KVBudget,
                 share_pages_with: ModelWorker | None = None,
                 before_setup: Callable[[ModelWorker], None] | None = None) -> None:
        mcfg = cfg.model
        self.cfg, self.platform, self.device = cfg, platform, device
        self.page_size = pcfg.page_size
        heads, kv_heads = rank_heads(mcfg.num_heads, mcfg.num_kv_heads, cfg.world_size)
        self.attention = platform.attention_backend(AttentionSpec(
            mcfg.num_layers, heads, kv_heads, mcfg.head_dim, mcfg.head_dim, pcfg.dtype,
            max_running_bound(cfg.max_running_requests), mcfg.context_len))
        # the group's communicator (the launcher initialised the process group)
        self.comm = (platform.communicator(cfg.rank, cfg.world_size)
                     if cfg.world_size > 1 else None)
        tp = TensorParallel(cfg.rank, cfg.world_size, self.comm, cfg.expert_parallel)

        def moe(spec):
            return platform.moe_backend(spec, self.comm if spec.ep_size > 1 else None)

        ctx = ModelContext(platform.ops(), self.attention, pcfg.dtype, device, moe=moe, tp=tp,
                           quantization=pcfg.quantization)
        self.model = build_model(mcfg, ctx, cfg.model_path, cfg.load_format, cfg.seed,
                                 cfg.show_progress)
        platform.model_loaded(self.model)
        if pcfg.quantization is not None:
            # the weights quantised at load left their model-dtype copies in the allocator's
            # cache, which the free memory the KV budget is sized from does not count
            platform.empty_cache()

        layout = self.attention.kv_layout(pcfg.page_size, pcfg.kv_cache_dtype)
        if share_pages_with is not None:  # same page ids, own pool (a draft model)
            self.page_table = share_pages_with.page_table
            self.num_pages = share_pages_with.num_pages
            self.max_running_requests = share_pages_with.max_running_requests
        else:
            max_pages_per_req = -(-mcfg.context_len // pcfg.page_size)
            self.num_pages = self._num_pages(layout, budget, max_pages_per_req)
            #: the running-request cap: the configured one, else sized from the pool (the
            #: same on every rank: the pool is the smallest rank's)
            self.max_running_requests = (
                cfg.max_running_requests if cfg.max_running_requests is not None
                else auto_max_running((self.num_pages - 1) * pcfg.page_size, mcfg.context_len,
                                      layout.bytes_per_page() * mcfg.num_layers
                                      // pcfg.page_size))
            self.page_table = PageTable(self.max_running_requests, max_pages_per_req, device)
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
        # rank 0 of a tensor-parallel group: where each step's plan goes (the rank group)
        self.send_plan: Callable[[StepPlan], None] | None = None
        self._plan: StepPlan | None = None
        self._moves: list[tuple[int, int]] = []

    def _num_pages(self, layout, budget: KVBudget, max_pages_per_req: int) -> int:
        # the pool never exceeds what the rows could fill at the full context; unset, the
        # pool is sized as for AUTO_MIN rows and the cap then follows from it (running_cap)
        rows = self.cfg.max_running_requests
        needed = (AUTO_MIN if rows is None else rows) * max_pages_per_req + 1
        if budget.bytes is not None:
            nbytes = budget.bytes
        else:
            nbytes = self.platform.kv_cache_budget(budget.mem_fraction, budget.reserve_bytes)
        pages = min(pages_for_budget(nbytes, layout, self.cfg.model.num_layers), needed)
        if self.comm is not None:  # every rank holds as many pages as the smallest budget
            mine = torch.tensor([pages], dtype=torch.int64, device=self.device)
            pages = int(self.comm.all_gather(mine).min())
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
        (device, fp32, one row per logit row of the batch) without waiting for them. Under
        tensor parallelism (rank 0) the step's plan goes to ``send_plan`` first, so the other
        ranks run the same forward (:meth:`follow`)."""
        plan = self._plan = self.runner.plan(batch)
        if self.send_plan is not None:
            # the other ranks need every page-table update since the last plan (a draft
            # worker sharing the table may have flushed some here) and the KV moves queued
            self.send_plan(replace(plan, page_updates=self.page_table.take_mirrored(),
                                   kv_moves=self._moves or None))
            self._moves = []
        return self.run(self.runner.batch_from_plan(plan))

    def publish(self, tokens: torch.Tensor) -> None:
        """Rank 0, after sampling the last :meth:`forward`: ``tokens`` (device int64, one per
        sampling request) become those requests' newest tokens for placeholders; under tensor
        parallelism they are broadcast to the other ranks (which wait in :meth:`follow`)."""
        rows = self._plan.publish_rows
        if rows and self.comm is not None:
            self.comm.broadcast(tokens.contiguous(), src=0)
        self.runner.future.publish(rows, tokens)

    def follow(self, plan: StepPlan) -> None:
        """A rank other than 0: run rank 0's step ``plan`` (the logits are discarded: rank 0
        samples) and take the sampled tokens it broadcasts."""
        if plan.kv_moves:
            self.runner.move_kv(plan.kv_moves)
        self.run(self.runner.batch_from_plan(plan))
        if plan.publish_rows:
            tokens = torch.empty(len(plan.publish_rows), dtype=torch.int64, device=self.device)
            self.runner.future.publish(plan.publish_rows, self.comm.broadcast(tokens, src=0))

    def move_kv(self, moves: list[tuple[int, int]]) -> None:
        """Copy the KV of each ``(source, destination)`` slot pair in this worker's pool
        (accepted tree paths; ``ModelRunner.move_kv``), queued after every forward launched
        so far. Under tensor parallelism the other ranks apply the same moves before the next
        plan's forward (the same order on their devices)."""
        self.runner.move_kv(moves)
        if self.send_plan is not None:
            self._moves.extend(moves)

    def run(self, batch: ForwardBatch) -> torch.Tensor:
        return self.strategy.run(batch)

    def forward_sampled(self, batch: ScheduledBatch, sampling: SamplingTensors) -> StepSample | None:
        """``batch``'s forward and its draw in one program when the execution strategy
        offers it (``ExecutionStrategy.run_and_sample``); ``None``: nothing ran, call
        :meth:`forward`. Always ``None`` on rank 0 of a tensor-parallel group (the other
        ranks follow plain forwards)."""
        if self.send_plan is not None:
            return None
        plan = self._plan = self.runner.plan(batch)
        return self.strategy.run_and_sample(self.runner.batch_from_plan(plan), sampling)

    def close(self) -> None:
        self.strategy.close()
        if self.comm is not None:
            self.comm.destroy()
