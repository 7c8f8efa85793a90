"""W4 at CPU scale: shared-prefix throughput with the radix cache on vs off, and the cache's
overhead at a 0% hit rate, on the built-in demo model (fp32), in one process.

    python benchmarks/cpu_w4.py --out benchmarks/results/cpu
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import anyware
from anyware import Engine
from anyware.bench import Workload, run_offline
from env_info import env_info

DEMO = str(Path(anyware.__file__).parent / "assets" / "demo-llama")


def bench(wl: Workload, cache: bool) -> dict:
    with Engine(DEMO, platform="cpu", dtype="float32", disable_radix_cache=not cache,
                show_progress=False) as engine:
        return run_offline(engine, wl).summary()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--groups", type=int, default=8)
    ap.add_argument("--group-size", type=int, default=16)
    ap.add_argument("--prefix", type=int, default=1024)
    ap.add_argument("--question", type=int, default=128)
    ap.add_argument("--output", type=int, default=64)
    ap.add_argument("--zero-hit-prompts", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/cpu")
    args = ap.parse_args()
    info = {**env_info(), "load_avg_start": os.getloadavg()}
    n = args.groups * args.group_size
    shared = Workload(n, args.question, args.output, shared_prefix_len=args.prefix,
                      group_size=args.group_size)
    w4 = {"cache_on": bench(shared, True), "cache_off": bench(shared, False)}
    for k in ("output_tok_s", "total_tok_s"):
        w4[f"speedup_{k}"] = round(w4["cache_on"][k] / w4["cache_off"][k], 3)
    w4["hit_rate"] = round(w4["cache_on"]["cached_tokens"] / w4["cache_on"]["prompt_tokens"], 4)
    zero = Workload(args.zero_hit_prompts, args.prefix + args.question, args.output, seed=7)
    runs = {"on": [], "off": []}
    for _ in range(args.repeats):  # alternate to spread machine noise over both
        runs["on"].append(bench(zero, True)["total_tok_s"])
        runs["off"].append(bench(zero, False)["total_tok_s"])
    ratio = statistics.median(runs["on"]) / statistics.median(runs["off"])
    result = {"env": {**info, "load_avg_end": os.getloadavg()}, "model": "demo-llama (fp32)",
              "w4": w4, "zero_hit": {"total_tok_s": runs, "median_ratio_on_over_off": round(ratio, 4),
                                     "workload": {"num_prompts": args.zero_hit_prompts,
                                                  "input_len": args.prefix + args.question,
                                                  "output_len": args.output}}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "W4-cpu.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({"w4": {k: v for k, v in w4.items() if not isinstance(v, dict)},
                      "zero_hit": result["zero_hit"]}, indent=2))


if __name__ == "__main__":
    main()
