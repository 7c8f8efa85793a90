"""A rank other than 0 of a tensor-parallel engine: the same platform and model worker as
rank 0's :class:`~anyware.engine.core.EngineCore`, without scheduler or sampler; it runs the
step plans rank 0 broadcasts until rank 0 stops it.

Started by rank 0 (``run_rank(cfg, placement, parent_pid)`` in a spawned process) or by the
CLI when a launcher such as torchrun made this process rank ``RANK > 0`` (:func:`serve_rank`).
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import replace

import torch
from anyware.distributed import Placement, RankFailedError, RankGroup, resolve_placement
from anyware.distributed.group import follow, watch_parent
from anyware.engine.config import EngineConfig
from anyware.engine.core import configure_platform, kv_budget, resolve_model, worker_config
from anyware.executor.worker import ModelWorker
from anyware.model.config import with_context_len
from anyware.runtime import load_platform

log = logging.getLogger("anyware")


def follower_placement(cfg: EngineConfig) -> Placement | None:
    """This process's placement when it is a rank other than 0 (under torchrun, or a node
    other than 0 with ``--nnodes``); None when it should run the engine (rank 0, or one rank)."""
    if cfg.tensor_parallel_size <= 1:
        return None
    placement = resolve_placement(cfg.tensor_parallel_size, cfg.nnodes, cfg.node_rank,
                                  cfg.dist_init_addr)
    return placement if placement.rank != 0 else None


@torch.inference_mode()
def run_rank(cfg: EngineConfig, placement: Placement, parent_pid: int | None = None,
             ready=None) -> None:
    """Build this rank's worker and follow rank 0 until it stops the group. Spawned ranks
    (``parent_pid`` set) exit when their parent is gone, and set ``ready`` (an event of the
    spawning rank) just before they join the group."""
    if parent_pid is not None:
        logging.basicConfig(level=logging.INFO,
                            format=f"%(levelname)s rank{placement.rank} %(name)s: %(message)s")
        watch_parent(parent_pid)
    model_cfg, path = resolve_model(cfg.model)
    model_cfg = with_context_len(model_cfg, cfg.context_len)
    platform = load_platform(cfg.platform)
    spec = cfg.spec_config()
    pcfg = configure_platform(platform, cfg, spec, placement.world_size)
    device = platform.init_device(placement.rank, placement.local_rank)
    platform.manual_seed(cfg.seed)
    if ready is not None:
        ready.set()
    group = RankGroup.start(placement, platform.dist_backend, cfg.dist_timeout, run_rank, (cfg,))
    worker = None
    try:
        # speculative decoding: rank 0 drafts; this rank runs the target's verify steps
        # (the same verify graphs as rank 0's target)
        wcfg = replace(worker_config(cfg, model_cfg, path, placement.rank, placement.world_size),
                       verify_tokens=spec.num_draft_tokens + 1 if spec is not None else 0)
        # an EAGLE-3 head on rank 0 shares the target's embedding: join its gather
        gather = ((lambda w: w.model.embed_tokens.full_weight())
                  if spec is not None and spec.algorithm == "eagle3" else None)
        worker = ModelWorker(wcfg, platform, pcfg, device, kv_budget(cfg, model_cfg),
                             before_setup=gather)
        follow(group, worker.follow)
        log.info("rank %d: stopped by rank 0", placement.rank)
    except RankFailedError as exc:
        # the group is broken: leaving it cleanly could wait on a dead peer; exit now, so
        # rank 0 (or torchrun) sees this rank's exit at once and names it
        log.error("%s", exc, exc_info=exc.__cause__)
        logging.shutdown()
        os._exit(1)
    if worker is not None:
        worker.close()
    group.close()
    platform.shutdown()


def serve_rank(cfg: EngineConfig) -> int:
    """The CLI's entry for a process that is not rank 0: run the rank; returns the exit code."""
    placement = follower_placement(cfg)
    assert placement is not None
    try:
        run_rank(cfg, placement)  # a broken group exits the process (code 1) from inside
    except Exception as exc:
        print(f"anyware: rank {placement.rank}: error: {exc}", file=sys.stderr)
        return 1
    return 0
