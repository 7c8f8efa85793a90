"""`EngineCore`: a model worker, KV bookkeeping, scheduler and sampler, and the step.

Built once per process (per rank) for one platform; ``step()`` is the whole engine loop body.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from anyware.engine.config import EngineConfig, parse_dtype
from anyware.engine.outputs import EngineStats
from anyware.executor.worker import KVBudget, ModelWorker, WorkerConfig
from anyware.memory import PageAllocator
from anyware.model.config import PRESETS, ModelConfig, with_context_len
from anyware.plugin import DeviceEvent, PlatformConfig, load_platform
from anyware.request import ScheduledBatch
from anyware.request.request import Request
from anyware.sampling import Sampler
from anyware.sampling.output import SampleOutput
from anyware.scheduler import Scheduler, SchedulerConfig, make_policy
from anyware.scheduler.kv_manager import KVManager

log = logging.getLogger("anyware")


@dataclass
class InFlightStep:
    """A launched batch whose sampled tokens are on their way to the host."""

    batch: ScheduledBatch
    output: SampleOutput
    event: DeviceEvent


def resolve_model(model: str) -> tuple[ModelConfig, Path | None]:
    if model in PRESETS:
        return PRESETS[model], None
    path = Path(model).expanduser()
    return ModelConfig.from_dir(path), path


class EngineCore:
    """One engine on one rank: the platform, a :class:`ModelWorker` for the model, the KV
    bookkeeping (allocator, prefix cache, ``KVManager``), the scheduler and the sampler."""

    def __init__(self, cfg: EngineConfig, rank: int = 0, world_size: int = 1,
                 local_rank: int | None = None) -> None:
        self.cfg = cfg
        model_cfg, self.model_path = resolve_model(cfg.model)
        self.model_config = model_cfg = with_context_len(model_cfg, cfg.context_len)
        platform = self.platform = load_platform(cfg.platform)
        pcfg = platform.configure(PlatformConfig(
            dtype=parse_dtype(cfg.dtype), kv_cache_dtype=parse_dtype(cfg.kv_cache_dtype),
            page_size=cfg.page_size, execution=cfg.execution,
            attention_backend=cfg.attention_backend, max_batch_size=cfg.max_running_requests,
            max_prefill_tokens=cfg.chunked_prefill_size, world_size=world_size,
            extra=dict(cfg.platform_options),
        ))
        device = platform.init_device(rank, local_rank)
        platform.manual_seed(cfg.seed)
        # leave room for the activations and logits of the largest step
        reserve = (64 * cfg.chunked_prefill_size * model_cfg.hidden_size * 4
                   + model_cfg.vocab_size * cfg.max_running_requests * 8)
        self.worker = ModelWorker(
            WorkerConfig(model_cfg, self.model_path, cfg.load_format, cfg.seed,
                         cfg.max_running_requests, rank, world_size, cfg.show_progress),
            platform, pcfg, device, KVBudget(cfg.kv_cache_bytes, cfg.mem_fraction, reserve))
        self.allocator = PageAllocator(self.worker.num_pages)
        cache = None
        if not cfg.disable_radix_cache:
            from anyware.memory.radix_cache import RadixCache
            cache = RadixCache(pcfg.page_size, self.allocator.free)
        self.kv = KVManager(self.allocator, self.worker.page_table, pcfg.page_size, cache)
        self.scheduler = Scheduler(
            SchedulerConfig(cfg.max_running_requests, cfg.chunked_prefill_size,
                            cfg.mixed_batches, model_cfg.context_len),
            self.kv, make_policy(cfg.schedule_policy if cache else "fcfs"),
            model_cfg.eos_token_ids)
        self.sampler = Sampler(platform.ops(), model_cfg.vocab_size, device)
        overlap = cfg.overlap_schedule
        self.overlap = platform.capabilities().async_execution if overlap is None else overlap
        self._inflight: InFlightStep | None = None
        log.info("engine ready: platform=%s dtype=%s page_size=%d kv_pages=%d (%.1f MiB) "
                 "overlap=%s", platform.name, pcfg.dtype, pcfg.page_size, self.worker.num_pages,
                 self.worker.pool.bytes / 2**20, self.overlap)

    # ------------------------------------------------------------ the step
    @torch.inference_mode()
    def step(self) -> bool:
        """Schedule and launch one batch; then complete the batch launched before it
        (overlap) or this one (synchronous). Returns whether anything happened."""
        batch = self.scheduler.schedule()
        launched = self._launch(batch) if batch is not None else None
        if self.overlap:
            done, self._inflight = self._inflight, launched
        else:
            done = launched
        if done is not None:
            self._complete(done)
        return batch is not None or done is not None

    def _launch(self, batch: ScheduledBatch) -> InFlightStep:
        """Queue the forward, the sampling and the copy of the tokens to the host; nothing
        here waits for the device."""
        logits = self.worker.forward(batch)
        self.scheduler.commit(batch)
        out = self.sampler.sample_step(logits, batch, self.worker.future.resolve)
        rows = [row for row, s in zip(batch.rows, batch.sampling_rows()) if s]
        self.worker.future.publish(rows, out.last_tokens())
        return InFlightStep(batch, out.to_host(self.platform.copy_to_host),
                            self.platform.record_event())

    def _complete(self, step: InFlightStep) -> None:
        step.event.synchronize()
        tokens, logprobs = step.output.lists()
        self.scheduler.process(step.batch, tokens, logprobs)

    def has_work(self) -> bool:
        return self._inflight is not None or self.scheduler.has_work()

    @property
    def kv_capacity_tokens(self) -> int:
        return self.allocator.capacity * self.kv.page_size

    def add(self, req: Request) -> None:
        self.scheduler.add(req)

    def abort(self, rid: str) -> bool:
        return self.scheduler.abort(rid)

    def check_invariants(self) -> None:
        self.kv.check()
        if self.kv.cache is not None:
            self.kv.cache.check_invariants()

    def stats(self) -> EngineStats:
        c = self.scheduler.counters
        cache = self.kv.cache
        return EngineStats(
            running=len(self.scheduler.running), waiting=len(self.scheduler.waiting),
            kv_pages_used=self.allocator.num_used - (cache.evictable_pages if cache else 0),
            kv_pages_total=self.allocator.capacity, prompt_tokens=c.prompt_tokens,
            generated_tokens=c.generated_tokens, cached_prompt_tokens=c.cached_prompt_tokens,
            evicted_pages=cache.evicted_pages_total if cache else 0,
            cached_pages=cache.total_cached_pages if cache else 0,
            retractions=c.retractions,
        )

    def shutdown(self) -> None:
        if self._inflight is not None:  # let the queued step finish before graphs go away
            self._inflight.event.synchronize()
            self._inflight = None
        self.worker.close()
        self.platform.empty_cache()
        self.platform.shutdown()
