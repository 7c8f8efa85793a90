"""Where a step's time goes on the GPU machine: kernels vs launches vs Python scheduling.

For the W3 prefill (1024 and 4096 fresh tokens) and W1 decode (batch 1) of the Llama-3.1-8B
shape: wall time per step, the summed GPU kernel time (torch.profiler CUDA activity), the
number of kernel launches, and the host time spent in each phase of ``EngineCore.step``
(schedule / build+launch / waiting for the device / process), timed by wrapping the methods.

    python3 benchmarks/gpu/profile_steps.py --out $OUT/profile.json
    python3 benchmarks/gpu/profile_steps.py --batch-decode 256 --engine-opt quantization=fp8 ...

Each profile also sorts the kernels into classes (linear, attention, norm, rotary, ...) and
sets them beside the floor the model's shape gives them (``step_floor.py``: bytes at the
measured bandwidth, FLOPs at the bf16 peak). ``--batch-decode B`` adds a steady-state decode
profile of ``B`` requests (W2's regime: 1024-token prompts, all decoding together).
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
from anyware.cli.options import platform_option
from run import ENGINE_OPTS, engine_for, parse_opt
from step_floor import classify, floors, table


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
    classes = collections.defaultdict(lambda: [0.0, 0])
    for e in evs:
        c = classes[classify(e.name)]
        c[0] += e.device_time / 1e3
        c[1] += 1
    return {"kernel_ms": round(total, 3), "launches": len(evs),
            "top_ms": {k: [round(v, 3), count[k]] for k, v in top.most_common(TOP)},
            "classes": dict(classes)}


def _bytes(engine) -> tuple[float, float]:
    """Bytes per linear weight and per KV element of this engine (fp8 or the model dtype)."""
    opts = engine.config
    act = 2 if "16" in str(opts.dtype or "bfloat16") else 4
    w = 1.0 if opts.quantization == "fp8" else act
    kv = 1.0 if str(opts.kv_cache_dtype or "").startswith(("fp8", "float8")) else act
    return w, kv


def _floor_table(engine, k: dict, steps: int, tokens: int, kv_tokens: int) -> dict:
    w, kv = _bytes(engine)
    f = floors(engine.model_config, tokens, kv_tokens, w, kv)
    return table(k["classes"], f, steps)


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
    k = kernels(prof)
    classes = _floor_table(engine, k, 1, n, n)
    del k["classes"]
    return {"tokens": n, "ttft_ms": round(wall, 2), "host_ms_per_request": phases, **k,
            "classes": classes}


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
            "launches_per_step": round(k["launches"] / steps, 1), "top_ms_total": k["top_ms"],
            "classes": _floor_table(engine, k, steps, 1, 128 + steps)}


def batch_decode(engine, batch: int, prompt_len: int, steps: int) -> dict:
    """Steady-state decode of ``batch`` requests: profiles ``steps`` consecutive DECODE steps
    that carry all of them (after 8 such steps of warm-up), wall time between the first and
    the last of them."""
    from anyware.plugin import ForwardMode

    prompts = Workload(batch, prompt_len, 1, seed=2).prompts(engine.model_config.vocab_size)
    # the first requests decode while the last are still prefilled (chunked prefill): every
    # request must outlive the prefill of all of them, or no step carries the whole batch
    prefill_steps = -(-batch * prompt_len // engine.core.cfg.chunked_prefill_size)
    p = SamplingParams(max_new_tokens=prefill_steps + steps + 24, temperature=0,
                       ignore_eos=True)
    core, prof = engine.core, profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU])
    state = {"n": 0, "t0": 0.0, "t1": 0.0}
    launch = core._launch

    def wrapped(b):
        full = b.mode == ForwardMode.DECODE and len(b.reqs) == batch
        if full and state["n"] == 8:
            torch.cuda.synchronize()
            prof.start()
            state["t0"] = time.perf_counter()
        out = launch(b)
        if full:
            state["n"] += 1
            if state["n"] == 8 + steps:
                torch.cuda.synchronize()
                state["t1"] = time.perf_counter()
                prof.stop()
        return out

    core._launch = wrapped
    try:
        engine.generate(prompts, p)
    finally:
        core._launch = launch
    if not state["t1"]:
        return {"error": f"only {state['n']} decode steps carried all {batch} requests"}
    k = kernels(prof)
    ms = (state["t1"] - state["t0"]) / steps * 1e3
    kv_tokens = batch * (prompt_len + 8 + steps // 2)
    return {"batch": batch, "prompt_len": prompt_len, "steps": steps,
            "ms_per_step": round(ms, 3), "output_tok_s": round(batch / ms * 1e3, 1),
            "kernel_ms_per_step": round(k["kernel_ms"] / steps, 3),
            "launches_per_step": round(k["launches"] / steps, 1), "top_ms_total": k["top_ms"],
            "classes": _floor_table(engine, k, steps, batch, kv_tokens)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="profile.json")
    ap.add_argument("--model", default="llama-3.1-8b")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--sizes", default="128,1024,4096", help="prefill sizes ('' for none)")
    ap.add_argument("--decode-steps", type=int, default=128, help="bs-1 decode steps (0: none)")
    ap.add_argument("--top", type=int, default=8, help="kernels listed per profile")
    ap.add_argument("--batch-decode", type=int, default=0, metavar="B",
                    help="also profile steady-state decode of B requests (W2's regime)")
    ap.add_argument("--engine-opt", action="append", default=[], metavar="KEY=VALUE",
                    help="engine option (e.g. quantization=fp8, kv_cache_dtype=fp8)")
    ap.add_argument("--platform-opt", action="append", default=[], metavar="KEY=VALUE",
                    help="platform option (e.g. cuda_graph_max_batch_size=1024)")
    args = ap.parse_args()
    ENGINE_OPTS.update(parse_opt(o) for o in args.engine_opt)
    if args.platform_opt:
        ENGINE_OPTS["platform_options"] = dict(platform_option(o) for o in args.platform_opt)
    global TOP
    TOP = args.top
    res = {"model": args.model, "engine_opts": ENGINE_OPTS}
    if args.sizes or args.decode_steps:
        e = engine_for(args.model, None, dtype=args.dtype, chunked_prefill_size=8192,
                       max_running_requests=8, disable_radix_cache=True)
        timer = PhaseTimer(e.core)
        res["prefill"] = [prefill(e, int(n), timer) for n in args.sizes.split(",") if n]
        if args.decode_steps:
            res["decode"] = decode(e, timer, args.decode_steps)
        e.shutdown()
        e = None
    if args.batch_decode:
        e = engine_for(args.model, None, dtype=args.dtype, max_running_requests=args.batch_decode)
        res["batch_decode"] = batch_decode(e, args.batch_decode, 1024, 32)
        e.shutdown()
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
