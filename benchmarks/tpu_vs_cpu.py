"""The tpu platform (compiled buckets on JAX's CPU backend) beside the cpu reference platform
(eager torch) on the same small workload, in one process, and the compile time per bucket.

    python benchmarks/tpu_vs_cpu.py --out benchmarks/results/tpu

Greedy, fp32, the built-in demo model; both platforms get the same requests. Output: a JSON
file and a table on stdout. Compile times are with an empty persistent cache (a fresh
temporary ANYWARE_JAX_CACHE_DIR), then a second start-up reading that cache.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import anyware
from anyware import Engine, SamplingParams
from env_info import env_info

DEMO = str(Path(anyware.__file__).parent / "assets" / "demo-llama")


def workload(n: int, prompt: int, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(3, 2000) for _ in range(prompt + rng.randrange(prompt))] for _ in range(n)]


def run(platform: str, prompts: list[list[int]], new: int, opts: dict) -> dict:
    t0 = time.perf_counter()
    with Engine(DEMO, platform=platform, dtype="float32", show_progress=False, **opts) as engine:
        startup = time.perf_counter() - t0
        params = SamplingParams(max_new_tokens=new, temperature=0, ignore_eos=True)
        engine.generate(prompts[:2], params)  # warm caches / allocator
        t1 = time.perf_counter()
        outs = engine.generate(prompts, params)
        wall = time.perf_counter() - t1
        strategy = engine.core.worker.strategy
        compile_s = {f"T{b.tokens}/B{b.requests}": round(s, 3)
                     for b, s in getattr(strategy, "compile_seconds", {}).items()}
        compilations = getattr(strategy, "compilations", None)
    tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    return {"platform": platform, "startup_s": round(startup, 2), "wall_s": round(wall, 3),
            "output_tokens": tokens, "tok_per_s": round(tokens / wall, 1),
            "compilations": compilations, "compile_s_per_bucket": compile_s,
            "tokens": [o.outputs[0].token_ids for o in outs]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--prompt", type=int, default=48)
    ap.add_argument("--output", type=int, default=32)
    ap.add_argument("--out", default="benchmarks/results/tpu")
    a = ap.parse_args()
    prompts = workload(a.requests, a.prompt)
    opts = dict(max_running_requests=8, chunked_prefill_size=64, page_size=16, context_len=256)
    results = {"env": env_info(), "args": vars(a), "engine_options": opts}
    with tempfile.TemporaryDirectory() as cache_dir:
        os.environ["ANYWARE_JAX_CACHE_DIR"] = cache_dir
        results["cpu"] = run("cpu", prompts, a.output, opts)
        results["tpu_cold_cache"] = run("tpu", prompts, a.output, opts)
        results["tpu_warm_cache"] = run("tpu", prompts, a.output, opts)
    same = results["cpu"]["tokens"] == results["tpu_cold_cache"]["tokens"]
    results["identical_greedy_tokens"] = same
    for key in ("cpu", "tpu_cold_cache", "tpu_warm_cache"):
        r = results[key]
        print(f"{key:16s} startup {r['startup_s']:7.2f} s  decode wall {r['wall_s']:7.3f} s  "
              f"{r['tok_per_s']:8.1f} tok/s  compilations {r['compilations']}")
    print("compile seconds per bucket (cold):", results["tpu_cold_cache"]["compile_s_per_bucket"])
    print("greedy tokens identical cpu vs tpu:", same)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for key in ("cpu", "tpu_cold_cache", "tpu_warm_cache"):
        results[key].pop("tokens")
    (out / "tpu_vs_cpu.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
