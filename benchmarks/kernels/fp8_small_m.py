"""The fp8 linear layer at decode-sized row counts, on the GPU: which product reads the e4m3
weights fastest at 1-16 rows (issue 21: W1 with ``--quantization fp8`` ran at 5.3 ms/step
against 4.7 in bf16 on the H200, cuBLASLt's 128 x 128 tile reading the weights at ~45% of
the bandwidth).

For each linear layer of a model shape (default the 8B: qkv, o, gate_up, down) and each row
count, every method is captured 20 times in one CUDA graph and replayed (decode runs in
graphs: no Python launch cost), and reported as µs per call, weight GB/s and % of 4.3 TB/s:

* ``scaled_mm``       TritonOps' default: per-token quantisation kernel + ``torch._scaled_mm``
* ``scaled_mm_only``  ``_scaled_mm`` on an already quantised row (the quantisation's share)
* ``scaled_mm_pad16`` rows padded to 16 first (whether cuBLASLt picks a better kernel)
* ``gemv[bn,bk,w]``   ``anyware.kernels.triton.fp8_gemv`` with those block sizes / warps (<= 4 rows)
* ``bf16``            ``F.linear`` on bf16 weights (the bandwidth the bf16 model gets)

The last table sums the four layers x the model's layer count: the linear-layer time of one
decode step per method (the best gemv configuration per shape), beside the floor.

    python3 benchmarks/kernels/fp8_small_m.py --out $OUT/fp8_small_m.json      # ~1-2 min on an H200
    TRITON_INTERPRET=1 python3 benchmarks/kernels/fp8_small_m.py --smoke       # CPU: the script runs
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from anyware.kernels.reference import quant as ref
from anyware.kernels.triton import fp8_gemv, quant
from anyware.kernels.triton.ops import TritonOps

BANDWIDTH = 4.3e12
SHAPES_8B = {"qkv": (6144, 4096), "o": (4096, 4096), "gate_up": (28672, 4096),
             "down": (4096, 14336)}
GEMV_GRID = list(itertools.product((8, 16, 32), (128, 256, 512), (2, 4, 8)))
GEMV_LABEL = "gemv[{},{},{}]"  # block_n, block_k, num_warps


def _timer(fn, reps: int, graphs: bool) -> float:
    """Median µs per call of ``fn`` (graph-captured ``reps`` times and replayed on a GPU)."""
    if not graphs:
        fn()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - t0) / reps * 1e6
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(reps):
            fn()
    times = []
    for _ in range(7):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        g.replay()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / reps)
    return statistics.median(times)


def methods(x, w, ws, w16, grid, max_gemv_rows: int) -> dict:
    """name -> zero-argument callable computing the layer for ``x``."""
    ops = TritonOps()
    xq, xs = quant.quantize_fp8_rows(x)
    wt, wsr = w.t(), ws[None, :]
    pad = torch.zeros(16, x.shape[1], dtype=x.dtype, device=x.device)
    out = {
        "scaled_mm": lambda: ops.fp8_linear(x, w, ws),
        "scaled_mm_only": lambda: torch._scaled_mm(xq, wt, scale_a=xs[:, None], scale_b=wsr,
                                                   out_dtype=x.dtype),
        "bf16": lambda: F.linear(x, w16),
    }
    if x.shape[0] < 16:
        def padded():
            pad[: x.shape[0]].copy_(x)
            return ops.fp8_linear(pad, w, ws)[: x.shape[0]]
        out["scaled_mm_pad16"] = padded
    if x.shape[0] <= max_gemv_rows:
        for bn, bk, nw in grid:
            out[GEMV_LABEL.format(bn, bk, nw)] = (
                lambda bn=bn, bk=bk, nw=nw: fp8_gemv.fp8_gemv(x, w, ws, block_n=bn, block_k=bk,
                                                              num_warps=nw))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="1,2,4,8,16")
    ap.add_argument("--layers", type=int, default=32, help="decoder layers (8B: 32)")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--out", default="fp8_small_m.json")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU (interpreter)")
    args = ap.parse_args()
    gpu = torch.cuda.is_available() and not args.smoke
    device = "cuda" if gpu else "cpu"
    shapes = SHAPES_8B if not args.smoke else {"a": (48, 64), "b": (32, 96)}
    grid = GEMV_GRID if not args.smoke else [(16, 32, 4)]
    rows = [int(r) for r in args.rows.split(",")] if not args.smoke else [1, 2]
    reps = args.reps if gpu else 2
    torch.manual_seed(0)
    results = []
    for name, (n, k) in shapes.items():
        w32 = torch.randn(n, k) * k**-0.5
        w, ws = (t.to(device) for t in ref.quantize_fp8_rows(w32))
        w16 = w32.to(device=device, dtype=torch.bfloat16)
        for m in rows:
            x = torch.randn(m, k, device=device, dtype=torch.bfloat16)
            want = ref.fp8_linear(x.float().cpu(), w.cpu(), ws.cpu()).to(x.dtype)
            for meth, fn in methods(x, w, ws, w16, grid, 4).items():
                try:
                    err = (fn().float().cpu() - want.float()).abs().max().item()
                    us = _timer(fn, reps, gpu)
                except Exception as e:  # a configuration that does not compile: record it
                    results.append({"layer": name, "rows": m, "method": meth, "error": str(e)[:200]})
                    continue
                wbytes = n * k * (2 if meth == "bf16" else 1)
                results.append({"layer": name, "n": n, "k": k, "rows": m, "method": meth,
                                "us": round(us, 2), "gb_s": round(wbytes / us / 1e3, 1),
                                "of_bandwidth": round(wbytes / us / 1e-6 / BANDWIDTH, 3),
                                "max_err_vs_reference": err})
    per_step = {}
    for m in rows:
        for meth in ("scaled_mm", "scaled_mm_only", "scaled_mm_pad16", "bf16", "gemv(best)"):
            total = 0.0
            for name in shapes:
                rs = [r for r in results if r["layer"] == name and r["rows"] == m and "us" in r
                      and (r["method"] == meth or (meth == "gemv(best)"
                                                   and r["method"].startswith("gemv")))]
                if not rs:
                    total = None
                    break
                total += min(r["us"] for r in rs)
            if total is not None:
                per_step[f"{m} rows, {meth}"] = round(total * args.layers / 1e3, 3)
    floor_ms = sum(n * k for n, k in shapes.values()) * args.layers / BANDWIDTH * 1e3
    report = {"device": torch.cuda.get_device_name() if gpu else "cpu (interpreter smoke)",
              # the configuration TritonOps runs (cuda_fp8_gemv_max_rows), for pick_options.py
              "default_gemv": GEMV_LABEL.format(fp8_gemv.BLOCK_N, fp8_gemv.BLOCK_K,
                                                fp8_gemv.NUM_WARPS),
              "torch": torch.__version__, "fp8_weight_floor_ms_per_step": round(floor_ms, 3),
              "linear_ms_per_step": per_step, "results": results}
    Path(args.out).write_text(json.dumps(report, indent=1))
    for r in sorted((r for r in results if "us" in r), key=lambda r: (r["rows"], r["layer"], r["us"]))[:400]:
        print(f"{r['layer']:8s} rows {r['rows']:2d} {r['method']:18s} {r['us']:9.2f} us "
              f"{r['gb_s']:8.1f} GB/s {r['of_bandwidth']:6.1%}  err {r['max_err_vs_reference']:.3g}")
    print(json.dumps({k: v for k, v in report.items() if k != "results"}, indent=1))


if __name__ == "__main__":
    main()
