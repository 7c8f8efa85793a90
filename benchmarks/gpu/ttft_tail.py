"""Where the TTFT tail at 70% load comes from (issue 20): the 8B shape behind `anyware serve`,
1024/1024 requests at 1 req/s and at a Poisson rate of 70% of run V6's saturation throughput,
with many more requests than serve_bench's 150 (so p99 is not one or two requests), every
request's send time and TTFT recorded. Reports p50/p90/p99 overall, for the first and last
halves of the sends, and the TTFTs of the slowest requests with when they were sent.

    python benchmarks/gpu/ttft_tail.py --out $OUT [--rate 6.39] [--prompts 300]   # ~3 min
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_bench import start_server


def pct(xs: list[float], q: float) -> float | None:
    xs = sorted(x for x in xs if x is not None)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else None


def describe(rows: list) -> dict:
    ttft = [r[1] for r in rows if r[3]]
    half = len(rows) // 2
    first = [r[1] for r in rows[:half] if r[3]]
    last = [r[1] for r in rows[half:] if r[3]]
    worst = sorted((r for r in rows if r[3]), key=lambda r: -r[1])[:8]
    return {"n": len(rows), "failed": sum(1 for r in rows if not r[3]),
            "p50": pct(ttft, 0.5), "p90": pct(ttft, 0.9), "p99": pct(ttft, 0.99),
            "first_half_p99": pct(first, 0.99), "last_half_p99": pct(last, 0.99),
            "worst_sent_s_ttft_ms": [[r[0], r[1]] for r in worst]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--preset", default="llama-3.1-8b")
    ap.add_argument("--rate", type=float, default=6.39)
    ap.add_argument("--prompts", type=int, default=300)
    ap.add_argument("--rate1-prompts", type=int, default=30)
    ap.add_argument("--lens", default="1024,1024")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run the 70%% load this many times on the same server (rate70, "
                         "rate70_2, ...): a tail that only the first run has is warm-up")
    args = ap.parse_args()
    from anyware.bench.online import ServeWorkload, run_serve_bench

    i, o = (int(x) for x in args.lens.split(","))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    proc, url = start_server(args.preset, max(4096, i + o + 64), out / "ttft_tail-server.log")
    res: dict = {"commit": os.environ.get("ANYWARE_COMMIT", ""), "preset": args.preset,
                 "input_len": i, "output_len": o}
    try:
        phases = [("rate1", 1.0, args.rate1_prompts, 1)] + [
            ("rate70" + ("" if j == 0 else f"_{j + 1}"), args.rate, args.prompts, 2 + j)
            for j in range(args.repeat)]
        for name, rate, n, seed in phases:
            if n <= 0:
                continue
            t = time.time()
            s = asyncio.run(run_serve_bench(url, ServeWorkload(
                num_prompts=n, input_len=i, output_len=o, request_rate=rate, seed=seed),
                per_request=True))
            res[name] = {"rate": rate, "duration_s": s["duration_s"],
                         "request_throughput": s["request_throughput"],
                         "tpot_ms_median": s["tpot_ms_median"], **describe(s["requests"]),
                         "requests": s["requests"]}
            print(f"[{time.time() - t:.0f}s] {name}: " + json.dumps(
                {k: v for k, v in res[name].items() if k != "requests"}), flush=True)
            (out / "ttft_tail.json").write_text(json.dumps(res, indent=1))
    finally:
        proc.terminate()
        try:
            proc.wait(90)
        except Exception:
            proc.kill()


if __name__ == "__main__":
    main()
