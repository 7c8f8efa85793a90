"""`EngineCore`: the model, KV memory, scheduler and sampler, and the step.

Built once per process for one platform; ``step()`` is the whole engine loop body.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from anyware.engine.config import EngineConfig, parse_dtype
from anyware.engine.outputs import EngineStats
from anyware.executor import ModelRunner
from anyware.memory import KVPool, PageAllocator, PageTable, pages_for_budget
from anyware.model.config import PRESETS, ModelConfig, with_context_len
from anyware.model.context import ModelContext
from anyware.model.loader import build_model
from anyware.plugin import AttentionSpec, DeviceEvent, PlatformConfig
from anyware.request import ScheduledBatch
from anyware.request.request import Request
from anyware.runtime import load_platform
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
    def __init__(self, cfg: EngineConfig) -> None:
        self.cfg = cfg
        model_cfg, self.model_path = resolve_model(cfg.model)
        self.model_config = model_cfg = with_context_len(model_cfg, cfg.context_len)
        platform = self.platform = load_platform(cfg.platform)
        pcfg = platform.configure(PlatformConfig(
            dtype=parse_dtype(cfg.dtype), kv_cache_dtype=parse_dtype(cfg.kv_cache_dtype),
            page_size=cfg.page_size, execution=cfg.execution,
            attention_backend=cfg.attention_backend, max_batch_size=cfg.max_running_requests,
            max_prefill_tokens=cfg.chunked_prefill_size, extra=dict(cfg.platform_options),
        ))
        device = platform.init_device(0)
        platform.manual_seed(cfg.seed)
        max_pages_per_req = -(-model_cfg.context_len // pcfg.page_size)
        self.attention = platform.attention_backend(AttentionSpec(
            model_cfg.num_layers, model_cfg.num_heads, model_cfg.num_kv_heads, model_cfg.head_dim,
            model_cfg.head_dim, pcfg.dtype, cfg.max_running_requests, model_cfg.context_len))
        ctx = ModelContext(platform.ops(), self.attention, pcfg.dtype, device)
        self.model = build_model(model_cfg, ctx, self.model_path, cfg.load_format, cfg.seed,
                                 cfg.show_progress)
        platform.model_loaded(self.model)

        layout = self.attention.kv_layout(pcfg.page_size, pcfg.kv_cache_dtype)
        num_pages = self._num_pages(layout, max_pages_per_req)
        self.pool = KVPool(platform, layout, model_cfg.num_layers, num_pages)
        page_table = PageTable(cfg.max_running_requests, max_pages_per_req, device)
        self.allocator = PageAllocator(self.pool.num_pages)
        cache = None
        if not cfg.disable_radix_cache:
            from anyware.memory.radix_cache import RadixCache
            cache = RadixCache(pcfg.page_size, self.allocator.free)
        self.kv = KVManager(self.allocator, page_table, pcfg.page_size, cache)
        self.scheduler = Scheduler(
            SchedulerConfig(cfg.max_running_requests, cfg.chunked_prefill_size,
                            cfg.mixed_batches, model_cfg.context_len),
            self.kv, make_policy(cfg.schedule_policy if cache else "fcfs"),
            model_cfg.eos_token_ids)
        self.runner = ModelRunner(self.model, self.attention, self.pool, page_table,
                                  pcfg.page_size, device)
        self.strategy = platform.execution_strategy()
        self.strategy.setup(self.runner)
        self.sampler = Sampler(platform.ops(), model_cfg.vocab_size, device)
        overlap = cfg.overlap_schedule
        self.overlap = platform.capabilities().async_execution if overlap is None else overlap
        self._inflight: InFlightStep | None = None
        log.info("engine ready: platform=%s dtype=%s page_size=%d kv_pages=%d (%.1f MiB) "
                 "overlap=%s", platform.name, pcfg.dtype, pcfg.page_size, num_pages,
                 self.pool.bytes / 2**20, self.overlap)

    def _num_pages(self, layout, max_pages_per_req: int) -> int:
        cfg, mcfg = self.cfg, self.model_config
        needed = cfg.max_running_requests * max_pages_per_req + 1
        if cfg.kv_cache_bytes is not None:
            budget = cfg.kv_cache_bytes
        else:
            # leave room for the activations and logits of the largest step
            reserve = (64 * cfg.chunked_prefill_size * mcfg.hidden_size * 4
                       + mcfg.vocab_size * cfg.max_running_requests * 8)
            budget = self.platform.kv_cache_budget(cfg.mem_fraction, reserve)
        pages = min(pages_for_budget(budget, layout, mcfg.num_layers), needed)
        if pages < 2:
            raise MemoryError(
                f"KV cache budget of {budget} bytes holds no pages; lower the model size or "
                f"raise --mem-fraction / kv_cache_bytes")
        return pages

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
        fb = self.runner.build_batch(batch)
        logits = self.strategy.run(fb)
        self.scheduler.commit(batch)
        rows = [i for i, s in enumerate(batch.sampling_rows()) if s]
        reqs = [batch.reqs[i] for i in rows]
        out = self.sampler.sample(logits, reqs, [batch.out_index[i] for i in rows],
                                  self.runner.future.resolve)
        self.runner.future.publish([batch.rows[i] for i in rows], out.tokens)
        host = out.to_host(self.platform.copy_to_host)
        return InFlightStep(batch, host, self.platform.record_event())

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
        self.strategy.close()
        self.platform.shutdown()
