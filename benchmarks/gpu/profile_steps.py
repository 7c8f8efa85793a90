"""Where a step's time goes on the GPU machine: kernels vs launches vs Python scheduling.

For the W3 prefill (1024 and 4096 fresh tokens) and W1 decode (batch 1) of the Llama-3.1-8B
shape: wall time per step, the summed GPU kernel time (torch.profiler CUDA activity), the
number of kernel launches, and the host time spent in each phase of ``EngineCore.step``
(schedule / build+launch / waiting for the device / process), timed by wrapping the methods.

    python3 benchmarks/gpu/profile_steps.py --out $OUT/profile.json
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from anyware import SamplingParams
from anyware.bench import Workload
from run import engine_for


class PhaseTimer:
    """Host seconds spent in the scheduler, the launch and the completion of each step."""

    def __init__(self, core) -> None:
        self.t = collections.defaultdict(float)
        self.n = collections.Counter()
        for obj, name, label in ((core.scheduler, "schedule", "schedule"),
                                 (core, "_launch", "build+launch"),
                                 (core, "_complete", "wait+process")):
            setattr(obj, name, self._wrap(getattr(obj, name), label))
        ev = core.platform.record_event

        def record_event():
            e = ev()
            sync = e.synchronize

            class Timed:
                def synchronize(_self):
                    t0 = time.perf_counter()
                    sync()
                    self.t["  of which device wait"] += time.perf_counter() - t0

                def query(_self):
                    return e.query()
            return Timed()
        core.platform.record_event = record_event

    def _wrap(self, fn, label):
        def inner(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.t[label] += time.perf_counter() - t0
                self.n[label] += 1
        return inner

    def report(self, steps: int) -> dict:
        return {k: round(v / steps * 1e3, 3) for k, v in self.t.items()}


TOP = 8


def kernels(prof) -> dict:
    """Summed device time, launch count, and the ``TOP`` kernels as ``name: [ms, launches]``."""
    evs = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    total = sum(e.device_time for e in evs) / 1e3
    top = collections.Counter()
    count = collections.Counter()
    for e in evs:
        top[e.name[:60]] += e.device_time / 1e3
        count[e.name[:60]] += 1
    return {"kernel_ms": round(total, 3), "launches": len(evs),
            "top_ms": {k: [round(v, 3), count[k]] for k, v in top.most_common(TOP)}}


def prefill(engine, n: int, timer: PhaseTimer) -> dict:
    prompt = Workload(1, n, 1, seed=n).prompts(engine.model_config.vocab_size)[0]
    p = SamplingParams(max_new_tokens=1, temperature=0)
    engine.generate([prompt], p)
    timer.t.clear()
    reps = 5
    t0 = time.perf_counter()
    for _ in range(reps):
        engine.generate([prompt], p)
    wall = (time.perf_counter() - t0) / reps * 1e3
    phases = timer.report(reps)
    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        engine.generate([prompt], p)
    return {"tokens": n, "ttft_ms": round(wall, 2), "host_ms_per_request": phases, **kernels(prof)}


def decode(engine, timer: PhaseTimer, steps: int) -> dict:
    prompt = Workload(1, 128, 1, seed=1).prompts(engine.model_config.vocab_size)[0]
    p = SamplingParams(max_new_tokens=steps, temperature=0, ignore_eos=True)
    engine.generate([prompt], p)
    timer.t.clear()
    t0 = time.perf_counter()
    engine.generate([prompt], p)
    wall = (time.perf_counter() - t0) * 1e3
    phases = timer.report(steps)
    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        engine.generate([prompt], p)
    k = kernels(prof)
    return {"steps": steps, "ms_per_step": round(wall / steps, 3), "host_ms_per_step": phases,
            "kernel_ms_per_step": round(k["kernel_ms"] / steps, 3),
            "launches_per_step": round(k["launches"] / steps, 1), "top_ms_total": k["top_ms"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="profile.json")
    ap.add_argument("--model", default="llama-3.1-8b")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--sizes", default="128,1024,4096")
    ap.add_argument("--decode-steps", type=int, default=128)
    ap.add_argument("--top", type=int, default=8, help="kernels listed per profile")
    args = ap.parse_args()
    global TOP
    TOP = args.top
    e = engine_for(args.model, None, dtype=args.dtype, chunked_prefill_size=8192,
                   max_running_requests=8, disable_radix_cache=True)
    timer = PhaseTimer(e.core)
    res = {"model": args.model,
           "prefill": [prefill(e, int(n), timer) for n in args.sizes.split(",")],
           "decode": decode(e, timer, args.decode_steps)}
    e.shutdown()
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
