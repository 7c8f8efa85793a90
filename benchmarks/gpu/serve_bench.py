"""Issue 20's GPU measurement: the server against the offline engine on the same workload in the
same run, TTFT under load, and the device busy fraction.

  python benchmarks/gpu/serve_bench.py --out $OUT            (benchmarks/gpu/serve_bench.sh)

For each shape (8B: N x 1024/1024; 0.5B: N x 512/256, all at once):
  1. offline: ``Engine`` in a subprocess, ``run_offline`` (the same code as ``anyware bench``),
     device busy from CUDA events around each forward (benchmarks/run.py's StepTimer);
  2. server: ``anyware serve`` (engine in its own process) and ``anyware bench serve``'s code
     from this process, all at once; for the 8B shape also Poisson rate 1 req/s and 70% of the
     measured saturation request rate (TTFT p99 against rate 1's).
Both phases also sample NVML's GPU utilisation (``nvidia-smi -lms 100``: the share of time a
kernel was running) inside their timed windows, the one busy measure both phases share (the
engine process of the server cannot be instrumented from here).
Results: $OUT/serve_bench.json (and one JSON per phase). No network is needed."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]

OFFLINE_SNIPPET = r"""
import importlib.util, json, sys, time
import torch
from anyware import Engine
from anyware.bench import Workload, run_offline
spec = importlib.util.spec_from_file_location("bench_run", sys.argv[1])
bench_run = importlib.util.module_from_spec(spec); spec.loader.exec_module(bench_run)
preset, n, i, o, ctx = sys.argv[2], *map(int, sys.argv[3:7])
e = Engine(preset, load_format="dummy", context_len=ctx, show_progress=False)
timer = bench_run.StepTimer(e) if torch.cuda.is_available() else None
t0 = time.time()
r = run_offline(e, Workload(n, i, o))
t1 = time.time()
s = r.summary()
s["device_busy_fraction_cuda_events"] = (
    round(timer.busy_ms() / (r.wall_s * 1e3), 4) if timer else None)
s["window"] = [t1 - r.wall_s, t1]
e.shutdown()
print("RESULT " + json.dumps(s))
"""


class GpuSampler:
    """``nvidia-smi`` utilisation samples (time, percent) in the background."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        try:
            self.proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                 "-lms", "100", "-i", "0"], stdout=subprocess.PIPE, text=True)
        except FileNotFoundError:
            self.proc = None
            return
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self.samples.append((time.time(), float(line.strip())))

    def busy(self, t0: float, t1: float) -> float | None:
        xs = [v for t, v in self.samples if t0 <= t <= t1]
        return round(sum(xs) / len(xs) / 100, 4) if xs else None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()


def offline(preset: str, n: int, i: int, o: int, ctx: int, gpu: GpuSampler, log: Path) -> dict:
    with open(log, "w") as f:
        p = subprocess.run([sys.executable, "-c", OFFLINE_SNIPPET, str(ROOT / "benchmarks/run.py"),
                            preset, str(n), str(i), str(o), str(ctx)],
                           stdout=subprocess.PIPE, stderr=f, text=True, timeout=600)
    line = next((x for x in p.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"offline {preset} failed (rc {p.returncode}); see {log}")
    s = json.loads(line[7:])
    s["device_busy_fraction_nvml"] = gpu.busy(*s["window"])
    return s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(preset: str, ctx: int, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    with open(log, "w") as f:  # the server keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "anyware.cli.main", "serve", "--model", preset,
             "--load-format", "dummy", "--context-len", str(ctx), "--port", str(port),
             "--disable-log-requests", "--disable-access-log", "--log-stats-interval", "0"],
            stdout=f, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 400
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}); see {log}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"the server did not start in 400 s; see {log}")


def online(url: str, gpu: GpuSampler, **kw) -> dict:
    from anyware.bench.online import ServeWorkload, run_serve_bench

    s = asyncio.run(run_serve_bench(url, ServeWorkload(**kw)))
    t1 = time.time()
    s["device_busy_fraction_nvml"] = gpu.busy(t1 - s["duration_s"], t1)
    return s


def shape(name: str, preset: str, n: int, i: int, o: int, ctx: int, rates: bool,
          args, gpu: GpuSampler, out: Path) -> dict:
    res: dict = {"preset": preset, "num_prompts": n, "input_len": i, "output_len": o}

    def save() -> None:  # after every phase: a run cut short keeps what it measured
        (out / f"{name}.json").write_text(json.dumps(res, indent=1))

    t = time.time()
    res["offline"] = offline(preset, n, i, o, ctx, gpu, out / f"{name}-offline.log")
    save()
    print(f"[{time.time() - t:.0f}s] {name} offline: {res['offline']['output_tok_s']} tok/s, "
          f"busy {res['offline']['device_busy_fraction_cuda_events']}", flush=True)
    proc, url = start_server(preset, ctx, out / f"{name}-server.log")
    try:
        t = time.time()
        sat = online(url, gpu, num_prompts=n, input_len=i, output_len=o)
        res["server_saturation"] = sat
        print(f"[{time.time() - t:.0f}s] {name} server: {sat['output_tok_s']:.0f} tok/s "
              f"({sat['failed']} failed), busy {sat['device_busy_fraction_nvml']}", flush=True)
        res["server_over_offline"] = round(sat["output_tok_s"] / res["offline"]["output_tok_s"], 4)
        save()
        if rates:
            r1 = online(url, gpu, num_prompts=args.rate1_prompts, input_len=i, output_len=o,
                        request_rate=1.0, seed=1)
            rate70 = 0.7 * sat["request_throughput"]
            r70 = online(url, gpu, num_prompts=args.rate70_prompts, input_len=i, output_len=o,
                         request_rate=rate70, seed=2)
            res["server_rate1"], res["server_rate70"] = r1, r70
            res["ttft_p99_rate70_over_rate1"] = round(r70["ttft_ms_p99"] / r1["ttft_ms_p99"], 3)
            print(f"{name} TTFT p99: rate 1 {r1['ttft_ms_p99']:.1f} ms, rate {rate70:.2f} "
                  f"{r70['ttft_ms_p99']:.1f} ms", flush=True)
    finally:
        proc.terminate()
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
    save()
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--prompts-8b", type=int, default=500)
    ap.add_argument("--prompts-05b", type=int, default=1000)
    ap.add_argument("--rate1-prompts", type=int, default=30)
    ap.add_argument("--rate70-prompts", type=int, default=150)
    ap.add_argument("--only", choices=("8b", "0.5b"), default=None)
    ap.add_argument("--lens-05b", default="512,256", help="input,output lengths (0.5B shape)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gpu = GpuSampler()
    res = {"commit": os.environ.get("ANYWARE_COMMIT"), "started": time.time()}
    try:
        if args.only in (None, "0.5b"):
            i, o = map(int, args.lens_05b.split(","))
            res["qwen2.5-0.5b"] = shape("0.5b", "qwen2.5-0.5b", args.prompts_05b, i, o,
                                        2048, False, args, gpu, out)
        if args.only in (None, "8b"):
            res["llama-3.1-8b"] = shape("8b", "llama-3.1-8b", args.prompts_8b, 1024, 1024,
                                        4096, True, args, gpu, out)
    finally:
        gpu.stop()
        res["wall_s"] = time.time() - res["started"]
        (out / "serve_bench.json").write_text(json.dumps(res, indent=1))
    print(json.dumps({k: v for k, v in res.items() if not isinstance(v, dict)}))


if __name__ == "__main__":
    main()
