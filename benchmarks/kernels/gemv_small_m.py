"""bf16 linear layers at decode-sized row counts on the GPU: ``F.linear`` (cuBLAS) against a
few-rows Triton kernel (defined here: :func:`small_m_linear`) at the W1 (Llama-3.1-8B) and
W5 (Qwen3-30B-A3B) shapes, to decide whether the model's layers should take it below some row
count (issues 14 and 21: at batch 1 the W5 step's dense layers read their weights at ~48% of
the bandwidth, the 8B's at ~87%).

The probe kernel: ``y = x @ W^T`` for ``x [M <= 16, K]``, one program per ``BLOCK_N`` output
channels walking all of ``K`` in tiles that feed ``tl.dot`` (rows padded to 16), so Triton's
software pipeline keeps ``num_stages`` weight tiles in flight through asynchronous copies; no
split-K, fp32 accumulation. Measured on an H200 (session 11, docs/performance.md): the best
configuration per shape against cuBLAS summed to 1.193 vs 1.200 ms per W5 step and 3.885 vs
3.950 ms per W1 step, so no layer uses it; it stays here as the measurement.

Each method runs as CUDA-graph replays over enough copies of the weight to exceed the L2
cache (2 GB, as a step's layers do), reported as µs per call, weight GB/s and % of
``--peak-gbps``. The Triton kernel is swept over block_n x block_k x warps x stages; each
shape's fastest configuration is checked against ``F.linear`` (relative error). The last
table sums each model's per-step dense layers (count x µs) for cuBLAS and for the best
Triton configuration per shape.

    python3 benchmarks/kernels/gemv_small_m.py --out $OUT/gemv_small_m.json    # ~1-2 min, H200
    TRITON_INTERPRET=1 python3 benchmarks/kernels/gemv_small_m.py --smoke --out /tmp/g.json
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
import triton
import triton.language as tl

MAX_ROWS = 16


@triton.jit
def _gemv_kernel(x_ptr, w_ptr, b_ptr, out_ptr, M, N, K, stride_x, stride_w, stride_o,
                 HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                 BLOCK_K: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    offs_m = tl.arange(0, BLOCK_M)
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    m_ok = offs_m < M
    n_ok = offs_n < N
    cols = tl.arange(0, BLOCK_K)
    x_rows = x_ptr + offs_m[:, None] * stride_x
    w_rows = w_ptr + offs_n[None, :].to(tl.int64) * stride_w  # [1, BLOCK_N]: W^T tiles
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        k = k0 + cols
        k_ok = k < K
        x = tl.load(x_rows + k[None, :], mask=m_ok[:, None] & k_ok[None, :], other=0.0)
        w = tl.load(w_rows + k[:, None], mask=k_ok[:, None] & n_ok[None, :], other=0.0)
        if UPCAST:  # the interpreter's low-precision dot is not reliable: do it in fp32
            x = x.to(tl.float32)
            w = w.to(tl.float32)
        acc = tl.dot(x, w, acc, input_precision=PRECISION)
    if HAS_BIAS:
        acc += tl.load(b_ptr + offs_n, mask=n_ok, other=0.0).to(tl.float32)[None, :]
    tl.store(out_ptr + offs_m[:, None] * stride_o + offs_n[None, :],
             acc.to(out_ptr.dtype.element_ty), mask=m_ok[:, None] & n_ok[None, :])


def default_blocks(n: int, k: int, device: torch.device) -> dict:
    """Launch configuration: about four programs per SM where ``N`` allows (16 channels at
    least, the smallest ``tl.dot`` tile), 128-column tiles, four stages."""
    sms = torch.cuda.get_device_properties(device).multi_processor_count \
        if device.type == "cuda" else 8
    block_n = 16
    while block_n < 64 and triton.cdiv(n, block_n * 2) >= 4 * sms:
        block_n *= 2
    interp = device.type == "cpu"
    return {"block_n": block_n, "block_k": 32 if interp else 128, "num_warps": 4,
            "num_stages": 1 if interp else 4}


def small_m_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                   block_n: int | None = None, block_k: int | None = None,
                   num_warps: int | None = None, num_stages: int | None = None) -> torch.Tensor:
    """``x [M, K] @ weight[N, K]^T (+ bias [N])`` -> ``[M, N]`` in ``x.dtype``, ``M <= 16``.
    ``None`` launch settings take :func:`default_blocks`. Raises ``ValueError`` for more
    rows or mismatched shapes."""
    m, k = x.shape
    n, kw = weight.shape
    if m > MAX_ROWS or kw != k:
        raise ValueError(f"small_m_linear: x {tuple(x.shape)} and weight {tuple(weight.shape)} "
                         f"(at most {MAX_ROWS} rows, matching K)")
    out = torch.empty((m, n), dtype=x.dtype, device=x.device)
    if m == 0:
        return out
    x = x if x.stride(-1) == 1 else x.contiguous()
    cfg = default_blocks(n, k, x.device)
    for key, val in (("block_n", block_n), ("block_k", block_k), ("num_warps", num_warps),
                     ("num_stages", num_stages)):
        if val is not None:
            cfg[key] = val
    _gemv_kernel[(triton.cdiv(n, cfg["block_n"]),)](
        x, weight, bias if bias is not None else weight, out, m, n, k, x.stride(0),
        weight.stride(0), out.stride(0), HAS_BIAS=bias is not None, BLOCK_M=16,
        BLOCK_N=cfg["block_n"], BLOCK_K=cfg["block_k"],
        PRECISION="ieee" if x.dtype == torch.float32 or x.device.type == "cpu" else "tf32",
        UPCAST=x.device.type == "cpu",
        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
    return out


# name -> (N, K, layers per step)
SHAPES = {
    "w5.qkv": (5120, 2048, 48), "w5.o": (2048, 4096, 48), "w5.router": (128, 2048, 48),
    "w5.lm_head": (151936, 2048, 1),
    "w1.qkv": (6144, 4096, 32), "w1.o": (4096, 4096, 32), "w1.gate_up": (28672, 4096, 32),
    "w1.down": (4096, 14336, 32), "w1.lm_head": (128256, 4096, 1),
}
GRID = list(itertools.product((16, 32, 64), (128, 256), (4, 8), (3, 5)))


def graph_us(fns, reps: int = 5) -> float:
    """Median µs per call of the callables ``fns`` (one per weight copy), captured once in a
    graph and replayed ``reps`` times."""
    for f in fns:
        f()
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for f in fns:
            f()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        g.replay()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / len(fns))
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="1", help="row counts")
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--peak-gbps", type=float, default=4300.0)
    ap.add_argument("--shape-budget-s", type=float, default=40.0,
                    help="sweep time per shape and row count (compiles are cached across shapes)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--smoke", action="store_true", help="CPU interpreter: tiny shapes, no timing")
    args = ap.parse_args()
    if args.smoke:
        x, w = torch.randn(1, 64), torch.randn(48, 64)
        err = (small_m_linear(x, w) - F.linear(x, w)).abs().max().item()
        Path(args.out).write_text(json.dumps({"smoke_max_err": err}) + "\n")
        print(f"smoke: max abs err {err:.2e}")
        return
    dev = torch.device("cuda")
    shapes = [s for s in args.shapes.split(",") if s]
    rows_list = [int(r) for r in args.rows.split(",")]
    results, totals = [], {}
    for name in shapes:
        n, k, count = SHAPES[name]
        nbytes = n * k * 2
        copies = max(1, (2 << 30) // nbytes)
        ws = [torch.randn(n, k, device=dev, dtype=torch.bfloat16) * k**-0.5 for _ in range(copies)]
        for m in rows_list:
            x = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
            row = {"shape": name, "N": n, "K": k, "rows": m, "weight_mb": round(nbytes / 1e6, 1)}
            us = graph_us([lambda w=w, x=x: F.linear(x, w) for w in ws])
            row["cublas_us"] = round(us, 2)
            row["cublas_pct"] = round(nbytes / (us * 1e-6) / 1e9 / args.peak_gbps * 100, 1)
            best, t0 = None, time.perf_counter()
            for bn, bk, warps, stages in GRID:
                if time.perf_counter() - t0 > args.shape_budget_s:
                    break
                cfg = dict(block_n=bn, block_k=bk, num_warps=warps, num_stages=stages)
                try:
                    us = graph_us([lambda w=w, x=x, cfg=cfg: small_m_linear(x, w, **cfg)
                                   for w in ws])
                except Exception as exc:  # shared memory on this GPU: skip it
                    row.setdefault("failed", []).append(f"{cfg}: {type(exc).__name__}")
                    continue
                if best is None or us < best[0]:
                    best = (us, cfg)
            if best is not None:
                ref = F.linear(x, ws[0]).float()
                got = small_m_linear(x, ws[0], **best[1]).float()
                row.update(triton_us=round(best[0], 2), triton_cfg=best[1],
                           triton_pct=round(nbytes / (best[0] * 1e-6) / 1e9 / args.peak_gbps
                                            * 100, 1),
                           rel_err=float((got - ref).norm() / ref.norm()))
                model = name.split(".")[0]
                tot = totals.setdefault(f"{model} rows={m}", {"cublas_ms": 0.0, "triton_ms": 0.0,
                                                              "floor_ms": 0.0})
                tot["cublas_ms"] += row["cublas_us"] * count / 1e3
                tot["triton_ms"] += min(row["cublas_us"], row["triton_us"]) * count / 1e3
                tot["floor_ms"] += nbytes * count / (args.peak_gbps * 1e9) * 1e3
            results.append(row)
            print(json.dumps(row), flush=True)
            Path(args.out).write_text(json.dumps({"rows": results, "totals": totals}, indent=1)
                                      + "\n")
        del ws
        torch.cuda.empty_cache()
    print("== per-step dense layers (ms): cuBLAS vs best-of(cuBLAS, Triton) per shape")
    for key, tot in totals.items():
        print(key, {k: round(v, 3) for k, v in tot.items()})
    Path(args.out).write_text(json.dumps({"rows": results, "totals": totals}, indent=1) + "\n")


if __name__ == "__main__":
    main()
