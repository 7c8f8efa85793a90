"""Host time per decode step on the CPU: the engine thread alone vs through the async front end.

A tiny model (tests/engine/tiny_models.py) makes the forward small; the forward itself is
timed and subtracted, leaving the host's share of each step.

    python benchmarks/host_overhead.py [--requests 256]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from anyware import Engine, SamplingParams
from anyware.bench import Workload, run_offline
from anyware.request.request import Request

from tests.engine.tiny_models import build_model


def timed_forward(core) -> dict:
    stats = {"s": 0.0, "n": 0}
    run = core.worker.strategy.run

    def inner(batch):
        t0 = time.perf_counter()
        out = run(batch)
        stats["s"] += time.perf_counter() - t0
        stats["n"] += 1
        return out
    core.worker.strategy.run = inner
    return stats


def engine_thread_only(engine, n: int, steps: int = 40) -> dict:
    core = engine.core
    g = torch.Generator().manual_seed(0)
    for i in range(n):
        core.add(Request(f"r{i}", torch.randint(5, 200, (32,), generator=g).tolist(),
                         SamplingParams(max_new_tokens=64, temperature=0, ignore_eos=True), i,
                         lambda d: None))
    while core.scheduler.waiting or any(r.in_prefill for r in core.scheduler.running):
        core.step()
    stats = timed_forward(core)
    t0 = time.perf_counter()
    for _ in range(steps):
        core.step()
    wall = time.perf_counter() - t0
    host = (wall - stats["s"]) / steps
    return {"host_ms_per_step": round(host * 1e3, 2), "us_per_request": round(host / n * 1e6, 1)}


def through_front_end(engine, n: int) -> dict:
    stats = timed_forward(engine.core)
    r = run_offline(engine, Workload(n, 32, 64), warmup=False)
    host = (r.wall_s - stats["s"]) / stats["n"]
    return {"host_ms_per_step": round(host * 1e3, 2), "us_per_request": round(host / n * 1e6, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=256)
    args = ap.parse_args()
    path = build_model("llama", Path(tempfile.mkdtemp()))
    opts = dict(platform="cpu", dtype="float32", page_size=16, max_running_requests=args.requests,
                show_progress=False, kv_cache_bytes=1 << 28, overlap_schedule=True)
    with Engine(str(path), **opts) as e:
        # the loop thread is idle (no requests): stepping the core from here is safe
        direct = engine_thread_only(e, args.requests)
    with Engine(str(path), **opts) as e:
        front = through_front_end(e, args.requests)
    print({"requests": args.requests, "engine_thread_only": direct, "through_front_end": front})


if __name__ == "__main__":
    main()
