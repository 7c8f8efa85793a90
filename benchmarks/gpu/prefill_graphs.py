"""Prefill graphs A/B in one engine: TTFT of one fresh prompt with the prefill graphs used and
bypassed, interleaved (graph, eager, graph, eager, ...) so machine drift cancels, plus the
device span of the forward alone (CUDA events around ``strategy.run``; for a
launch-bound eager forward it includes the gaps the GPU waits for launches).

    python benchmarks/gpu/prefill_graphs.py --out prefill_graphs.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from anyware import Engine, SamplingParams
from anyware.bench import Workload
from run import StepTimer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", default="llama-3.1-8b")
    ap.add_argument("--lengths", default="16,128,512,1024,1500,2048")
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    e = Engine(args.model, load_format="dummy", dtype="bfloat16", context_len=8192,
               max_running_requests=8, disable_radix_cache=True, show_progress=False)
    strat = e.core.worker.strategy
    buckets = strat.prefill_tokens
    timer = StepTimer(e)

    def take_ms() -> float:  # device span of the forwards since the last call
        ms = timer.busy_ms()
        timer.events.clear()
        return ms

    p = SamplingParams(max_new_tokens=1, temperature=0)
    res = {"commit": os.environ.get("ANYWARE_COMMIT", "unknown"),
           "device": torch.cuda.get_device_name(), "model": args.model, "buckets": list(buckets),
           "rows": []}
    for n in (int(x) for x in args.lengths.split(",")):
        prompt = Workload(1, n, 1, seed=n).prompts(e.model_config.vocab_size)[0]
        ttft = {"graph": [], "eager": []}
        gpu = {"graph": [], "eager": []}
        for mode in ("graph", "eager"):  # warm-up of both paths (Triton compiles)
            strat.prefill_tokens = buckets if mode == "graph" else ()
            e.generate([prompt], p)
        take_ms()
        before = strat.prefill_replays
        for _ in range(args.reps):
            for mode in ("graph", "eager"):
                strat.prefill_tokens = buckets if mode == "graph" else ()
                t0 = time.perf_counter()
                e.generate([prompt], p)
                ttft[mode].append((time.perf_counter() - t0) * 1e3)
                gpu[mode].append(take_ms())
        row = {"tokens": n, "graph_replays": strat.prefill_replays - before}
        for mode in ("graph", "eager"):
            row[f"ttft_ms_{mode}"] = round(statistics.median(ttft[mode]), 2)
            row[f"forward_span_ms_{mode}"] = round(statistics.median(gpu[mode]), 2)
        row["speedup"] = round(row["ttft_ms_eager"] / row["ttft_ms_graph"], 3)
        print(json.dumps(row), flush=True)
        res["rows"].append(row)
    strat.prefill_tokens = buckets
    e.shutdown()
    with open(args.out, "w") as f:
        json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
