"""`EngineCore`: a model worker, KV bookkeeping, scheduler and sampler, and the step.

Built once per process (per rank) for one platform; ``step()`` is the whole engine loop body.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from anyware.distributed import PlacementError, RankGroup, resolve_placement
from anyware.engine.config import EngineConfig, parse_dtype, parse_kv_dtype
from anyware.engine.outputs import EngineStats
from anyware.executor.worker import KVBudget, ModelWorker, WorkerConfig
from anyware.memory import PageAllocator
from anyware.memory.running_cap import max_running_bound
from anyware.model.config import PRESETS, ModelConfig, with_context_len
from anyware.plugin import AttentionFeatures, CapabilityError, DeviceEvent, PlatformConfig
from anyware.request import ScheduledBatch
from anyware.request.request import Request
from anyware.runtime import load_platform
from anyware.sampling import Sampler
from anyware.sampling.output import SampleOutput
from anyware.scheduler import Scheduler, SchedulerConfig, make_policy
from anyware.scheduler.kv_manager import KVManager
from anyware.spec import NgramDrafter, NgramTreeDrafter, SpecConfig, SpecSwitch, Speculator

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


def _split_budget(budget: KVBudget, target: ModelConfig, draft: ModelConfig,
                  dtype: torch.dtype, extra_per_token: int = 0) -> KVBudget:
    """The target's share of ``budget`` when a draft model keeps a KV pool of as many pages
    (plus ``extra_per_token`` elements per slot, e.g. an EAGLE-3 head's features): split by
    bytes per token, after the draft's weights (loaded after the target's budget is
    measured)."""
    def per_token(m: ModelConfig) -> int:
        return 2 * m.num_layers * m.num_kv_heads * m.head_dim

    share = per_token(target) / (per_token(target) + per_token(draft) + extra_per_token)
    if budget.bytes is not None:
        return KVBudget(int(budget.bytes * share), budget.mem_fraction, budget.reserve_bytes)
    weights = draft.param_count() * torch.empty((), dtype=dtype).element_size()
    return KVBudget(None, budget.mem_fraction * share,
                    int((budget.reserve_bytes + weights) * share))


def _check_draft_architecture(algorithm: str, path: str, cfg: ModelConfig) -> None:
    from anyware.model.eagle3 import ARCHITECTURE

    if (cfg.architecture == ARCHITECTURE) != (algorithm == "eagle3"):
        hint = ("use --speculative-algorithm eagle3 for an EAGLE-3 head" if algorithm == "draft"
                else f"an EAGLE-3 head's config.json names architecture {ARCHITECTURE}")
        raise ValueError(f"speculative draft model {path} has architecture {cfg.architecture}: "
                         f"{hint}")


def configure_platform(platform, cfg: EngineConfig, spec: SpecConfig | None,
                       world_size: int) -> PlatformConfig:
    """The platform configured for ``cfg`` (the same on every rank)."""
    tree = spec is not None and spec.tree
    features = AttentionFeatures(verify=spec is not None, tree_mask=tree)
    try:
        return platform.configure(PlatformConfig(
            dtype=parse_dtype(cfg.dtype), kv_cache_dtype=parse_kv_dtype(cfg.kv_cache_dtype),
            page_size=cfg.page_size, execution=cfg.execution,
            attention_backend=cfg.attention_backend, attention_features=features,
            max_batch_size=max_running_bound(cfg.max_running_requests),
            max_prefill_tokens=cfg.chunked_prefill_size, world_size=world_size,
            extra=dict(cfg.platform_options), quantization=cfg.quantization,
        ))
    except CapabilityError as e:
        if tree and "tree_mask" in str(e):
            raise CapabilityError(
                f"{e} Tree drafts (--speculative-ngram-tree) need the attention capability "
                "'tree_mask' (a per-request mask over the draft tokens); run without "
                "--speculative-ngram-tree (chain drafts) or pick an attention backend that "
                "declares tree_mask.") from None
        if spec is None or "verify" not in str(e):
            raise
        raise CapabilityError(
            f"{e} Speculative decoding (--speculative-algorithm {spec.algorithm}) needs "
            "the attention capability 'verify' (several new tokens per request with logits "
            "for each); run without --speculative-algorithm on this platform.") from None


def kv_budget(cfg: EngineConfig, model_cfg: ModelConfig) -> KVBudget:
    """The KV budget, leaving room for the activations and logits of the largest step."""
    reserve = (64 * cfg.chunked_prefill_size * model_cfg.hidden_size * 4
               + model_cfg.vocab_size * max_running_bound(cfg.max_running_requests) * 8)
    return KVBudget(cfg.kv_cache_bytes, cfg.mem_fraction, reserve)


def worker_config(cfg: EngineConfig, model_cfg: ModelConfig, path: Path | None, rank: int,
                  world_size: int) -> WorkerConfig:
    return WorkerConfig(model_cfg, path, load_format=cfg.load_format, seed=cfg.seed,
                        max_running_requests=cfg.max_running_requests, rank=rank,
                        world_size=world_size, show_progress=cfg.show_progress and rank == 0,
                        expert_parallel=cfg.enable_expert_parallel)


class EngineCore:
    """One engine on one rank: the platform, a :class:`ModelWorker` for the model, the KV
    bookkeeping (allocator, prefix cache, ``KVManager``), the scheduler and the sampler."""

    def __init__(self, cfg: EngineConfig, rank: int = 0, world_size: int = 1,
                 local_rank: int | None = None) -> None:
        self.cfg = cfg
        model_cfg, self.model_path = resolve_model(cfg.model)
        self.model_config = model_cfg = with_context_len(model_cfg, cfg.context_len)
        spec = cfg.spec_config()
        draft_cfg = draft_path = None
        if spec is not None and spec.algorithm in ("draft", "eagle3"):
            draft_cfg, draft_path = resolve_model(spec.draft_model)
            draft_cfg = with_context_len(draft_cfg, model_cfg.context_len)
            _check_draft_architecture(spec.algorithm, spec.draft_model, draft_cfg)
            if draft_cfg.vocab_size != model_cfg.vocab_size:
                raise ValueError(
                    f"draft model {spec.draft_model} has a vocabulary of "
                    f"{draft_cfg.vocab_size} tokens, the target {model_cfg.vocab_size}: a draft "
                    "model must share the target's tokenizer")
        if spec is not None and spec.tree and model_cfg.sliding_window is not None:
            # attention backends place a verify row's query at prefix + row for the window
            # bound; a tree node sits at prefix + depth, so windowed layers would see too little
            raise ValueError(
                f"tree drafts (--speculative-ngram-tree) are not supported for models with "
                f"sliding-window attention ({cfg.model}: window {model_cfg.sliding_window}); "
                "run without --speculative-ngram-tree (chain drafts)")
        platform = self.platform = load_platform(cfg.platform)
        placement = self.group = None
        if cfg.tensor_parallel_size > 1:
            placement = resolve_placement(cfg.tensor_parallel_size, cfg.nnodes, cfg.node_rank,
                                          cfg.dist_init_addr)
            if placement.rank != 0:
                raise PlacementError(
                    f"this process is rank {placement.rank}: ranks other than 0 run "
                    "anyware.engine.rank.run_rank (the CLI does this), not an engine")
            rank, world_size, local_rank = 0, placement.world_size, placement.local_rank
        pcfg = configure_platform(platform, cfg, spec, world_size)
        if spec is not None and spec.algorithm == "eagle3" and pcfg.execution == "compiled":
            # the target writes the head's features into a shared tensor inside its forward;
            # a compiled (functional) program keeps only the KV cache it is handed as state
            raise CapabilityError(
                f"platform {platform.name!r} runs compiled programs that keep only the KV cache "
                "as state, and EAGLE-3 needs the target's in-place writes of the head's "
                "features: run with --execution eager (or graphs where the platform has them), "
                "or use --speculative-algorithm ngram / draft")
        if spec is not None and spec.tree and pcfg.execution == "compiled":
            # an accepted tree path's KV is copied in place between steps; a compiled
            # (functional) program keeps the KV cache as state of its own
            raise CapabilityError(
                f"platform {platform.name!r} runs compiled programs that keep the KV cache as "
                "their own state, and tree drafts move the accepted path's KV in place: run "
                "with --execution eager (or graphs where the platform has them), or without "
                "--speculative-ngram-tree")
        device = platform.init_device(rank, local_rank)
        platform.manual_seed(cfg.seed)
        if placement is not None:
            from anyware.engine.rank import run_rank

            self.group = RankGroup.start(placement, platform.dist_backend, cfg.dist_timeout,
                                         run_rank, (cfg,))
        budget = kv_budget(cfg, model_cfg)
        eagle = None
        if draft_cfg is not None:
            features = draft_cfg.hidden_size if spec.algorithm == "eagle3" else 0
            budget = _split_budget(budget, model_cfg, draft_cfg, pcfg.dtype, features)
            # the draft model catches up over at most 2 tokens per request (DraftModelDrafter:
            # the bonus token, plus the last draft when all were accepted); the EAGLE-3 head's
            # catch-ups cover the accepted tokens plus one (at most k + 1) and its drafts are
            # DECODE steps: both replay graphs (a wider catch-up, e.g. after steps without
            # drafts, runs eagerly)
            # the draft runs whole on rank 0 (the other ranks only follow the target's steps)
            draft_wcfg = replace(worker_config(cfg, draft_cfg, draft_path, 0, 1),
                                 verify_tokens=2 if spec.algorithm != "eagle3"
                                 else spec.num_draft_tokens + 1)
        if spec is not None and spec.algorithm == "eagle3":
            # the head is built while the target's worker is (before its graphs are captured)
            from anyware.spec.eagle3 import Eagle3Attachment

            eagle = Eagle3Attachment(draft_wcfg, platform, pcfg, device, budget,
                                     spec.eagle_topk)
        # graph strategies capture VERIFY graphs this wide: the target verifies k drafts plus
        # its last token
        verify_tokens = spec.num_draft_tokens + 1 if spec is not None else 0
        try:
            self.worker = ModelWorker(
                replace(worker_config(cfg, model_cfg, self.model_path, rank, world_size),
                        verify_tokens=verify_tokens),
                platform, pcfg, device, budget,
                before_setup=eagle.attach if eagle is not None else None)
        except Exception as exc:
            if self.group is None:
                raise
            error = self.group.explain(exc)  # names a rank that died while loading
            self.group.close()
            if error is exc:
                raise
            raise error from exc
        if self.group is not None:
            self.worker.send_plan = self.group.send
            self.worker.page_table.mirror()
        self.draft_worker: ModelWorker | None = None
        self._eagle = eagle
        if eagle is not None:
            self.draft_worker = eagle.worker
            # the target's features of an accepted tree path move with its KV
            self.worker.runner.slot_tensors.append(eagle.features)
        elif draft_cfg is not None:  # its own KV pool, addressed by the target's page ids
            self.draft_worker = ModelWorker(draft_wcfg, platform, pcfg, device, budget,
                                            share_pages_with=self.worker)
        self.allocator = PageAllocator(self.worker.num_pages)
        cache = None
        if not cfg.disable_radix_cache:
            from anyware.memory.radix_cache import RadixCache
            cache = RadixCache(pcfg.page_size, self.allocator.free)
        self.kv = KVManager(self.allocator, self.worker.page_table, pcfg.page_size, cache)
        self.speculator = self._speculator(spec) if spec is not None else None
        self.scheduler = Scheduler(
            SchedulerConfig(self.worker.max_running_requests, cfg.chunked_prefill_size,
                            cfg.mixed_batches, model_cfg.context_len,
                            spec.num_draft_tokens if spec is not None else 0,
                            cfg.schedule_conservativeness),
            self.kv, make_policy(cfg.schedule_policy if cache else "fcfs"),
            model_cfg.eos_token_ids,
            drafts=self.speculator.propose if self.speculator is not None else None)
        self.sampler = Sampler(platform.ops(), model_cfg.vocab_size, device,
                               rejection=spec is not None
                               and cfg.speculative_acceptance == "rejection")
        overlap = cfg.overlap_schedule
        self.overlap = platform.capabilities().async_execution if overlap is None else overlap
        self._inflight: InFlightStep | None = None
        log.info("engine ready: platform=%s dtype=%s page_size=%d kv_pages=%d (%.1f MiB) "
                 "max_running_requests=%d%s overlap=%s speculative=%s", platform.name,
                 pcfg.dtype, pcfg.page_size, self.worker.num_pages,
                 self.worker.pool.bytes / 2**20, self.max_running_requests,
                 " (sized from the KV pool)" if cfg.max_running_requests is None else "",
                 self.overlap, f"{spec.algorithm} k={spec.num_draft_tokens}" if spec else "off")

    @property
    def max_running_requests(self) -> int:
        """The running-request cap in force: the configured one, or the one sized from the KV
        pool (``anyware.memory.running_cap``) when the configuration left it ``None``."""
        return self.worker.max_running_requests

    def _speculator(self, spec: SpecConfig) -> Speculator:
        if spec.algorithm == "ngram":
            drafter = (NgramTreeDrafter(spec.ngram_min, spec.ngram_max) if spec.ngram_tree
                       else NgramDrafter(spec.ngram_min, spec.ngram_max))
        elif spec.algorithm == "eagle3":
            from anyware.spec.eagle3 import Eagle3Drafter

            if spec.eagle_topk > 1:
                from anyware.spec.eagle3_tree import Eagle3TreeDrafter

                drafter = Eagle3TreeDrafter(self.draft_worker, self.kv,
                                            self.cfg.chunked_prefill_size,
                                            self._eagle.features, spec.eagle_topk)
            else:
                drafter = Eagle3Drafter(self.draft_worker, self.kv,
                                        self.cfg.chunked_prefill_size, self._eagle.features)
        else:
            from anyware.spec.draft_model import DraftModelDrafter

            drafter = DraftModelDrafter(self.draft_worker, self.kv, self.cfg.chunked_prefill_size)
        return Speculator(drafter, spec.num_draft_tokens, self.model_config.context_len,
                          SpecSwitch(enabled=self.cfg.speculative_auto_off))

    # ------------------------------------------------------------ the step
    @torch.inference_mode()
    def step(self) -> bool:
        """Schedule and launch one batch; then complete the batch launched before it
        (overlap) or this one (synchronous). Returns whether anything happened. Under tensor
        parallelism a dead rank raises :class:`~anyware.distributed.RankFailedError`."""
        if self.group is None:
            return self._step()
        self.group.check()
        try:
            return self._step()
        except Exception as exc:
            error = self.group.explain(exc)
            if error is exc:  # rank 0's own error, not the group's
                raise
            raise error from exc

    def _step(self) -> bool:
        spec = self.speculator
        if spec is not None:  # a step the off-switch pauses gets no draft source
            self.scheduler.drafts = spec.propose if spec.before_schedule(
                self.scheduler.running) else None
        batch = self.scheduler.schedule()
        if spec is not None:
            spec.scheduled(batch)
        launched = self._launch(batch) if batch is not None else None
        if self.overlap:
            done, self._inflight = self._inflight, launched
        else:
            done = launched
        if done is not None:
            self._complete(done)
        if spec is not None:
            spec.after_step(batch)
        return batch is not None or done is not None

    def _launch(self, batch: ScheduledBatch) -> InFlightStep:
        """Queue the forward, the sampling and the copy of the tokens to the host; nothing
        here waits for the device."""
        fused = None
        if self.worker.samples_in_step:  # the draw may join the forward's program
            params = self.sampler.step_params(batch)
            fused = None if params is None else self.worker.forward_sampled(batch, params)
        if fused is None:
            logits = self.worker.forward(batch)
        self.scheduler.commit(batch)
        if fused is not None:
            out = self.sampler.from_step(fused, batch)
        else:
            out = self.sampler.sample_step(logits, batch, self.worker.future.resolve)
        self.worker.publish(out.last_tokens())
        return InFlightStep(batch, out.to_host(self.platform.copy_to_host),
                            self.platform.record_event())

    def _complete(self, step: InFlightStep) -> None:
        step.event.synchronize()
        tokens, logprobs = step.output.lists()
        self.scheduler.process(step.batch, tokens, logprobs, step.output.prompt_lists())
        moves = self.scheduler.take_kv_moves()
        if moves:  # accepted tree paths to consecutive positions, before any later launch
            self.worker.move_kv(moves)
        if self.speculator is not None:
            self.speculator.after_process(step.batch, tokens)

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
            retractions=c.retractions, drafted_tokens=c.drafted_tokens,
            accepted_tokens=c.accepted_tokens, verify_steps=c.verify_steps,
            **self._switch_stats(),
        )

    def _switch_stats(self) -> dict[str, int]:
        if self.speculator is None:
            return {}
        sc = self.speculator.switch.counters
        return dict(spec_paused_steps=sc.paused_steps, spec_switch_offs=sc.switch_offs,
                    spec_switch_ons=sc.switch_ons)

    def shutdown(self) -> None:
        if self._inflight is not None:  # let the queued step finish before graphs go away
            self._inflight.event.synchronize()
            self._inflight = None
        if self.speculator is not None:
            self.speculator.close()
        if self.draft_worker is not None:
            self.draft_worker.close()
        if self.group is not None:  # the other ranks stop first: then nobody waits on us
            self.group.close()
        self.worker.close()
        self.platform.empty_cache()
        self.platform.shutdown()
