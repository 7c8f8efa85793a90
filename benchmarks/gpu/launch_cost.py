"""Host cost of launching each op the Llama layer runs eagerly (prefill, MIXED steps).

For each op wrapper: ``N`` back-to-back calls at a tiny shape (GPU time negligible, so the
loop is bound by the host) -> microseconds of host time per call; and the same op at the
Llama-3.1-8B prefill shape (1024 tokens) -> host enqueue time vs GPU time per call.
Prefill steps are eager, so these costs decide whether a step is launch-bound.

    python benchmarks/gpu/launch_cost.py --out launch_cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.nn.functional as F
from anyware.kernels.triton import activation, norm, rotary, store
from anyware.kernels.triton.extend_attention import extend_attention


def bench(fn, n: int) -> dict:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    host = time.perf_counter() - t0
    torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    return {"host_us": round(host / n * 1e6, 1), "wall_us": round(wall / n * 1e6, 1)}


def ops(t: int, dev: str, dt=torch.bfloat16) -> dict:
    h, hq, hk, d, inter = 4096, 32, 8, 128, 14336
    x = torch.randn(t, h, device=dev, dtype=dt)
    r = torch.randn_like(x)
    w = torch.ones(h, device=dev, dtype=dt)
    wqkv = torch.randn((hq + 2 * hk) * d, h, device=dev, dtype=dt) * 0.01
    qkv = F.linear(x, wqkv)
    q, k, v = qkv.split([hq * d, hk * d, hk * d], -1)
    q, k, v = q.view(t, hq, d), k.view(t, hk, d), v.view(t, hk, d)
    pos = torch.arange(t, device=dev, dtype=torch.int64)
    cs = torch.randn(8192, d, device=dev, dtype=torch.float32)
    page = 16
    pages = (t + page - 1) // page
    kc = torch.zeros(pages * page + page, hk, d, device=dev, dtype=dt)
    vc = torch.zeros_like(kc)
    slots = torch.arange(t, device=dev, dtype=torch.int64)
    pt = torch.arange(pages, device=dev, dtype=torch.int32)[None]
    zero = torch.zeros(1, device=dev, dtype=torch.int32)
    ext = torch.tensor([t], device=dev, dtype=torch.int32)
    gu = torch.randn(t, 2 * inter, device=dev, dtype=dt)
    wo = torch.randn(h, hq * d, device=dev, dtype=dt) * 0.01
    return {
        "rms_norm": lambda: norm.rms_norm(x, w, 1e-5),
        "fused_add_rms_norm": lambda: norm.fused_add_rms_norm(x, r, w, 1e-5),
        "rotary(q,k)": lambda: rotary.apply_rotary(q, k, pos, cs, True),
        "store_kv": lambda: store.store_kv(kc, vc, k, v, slots),
        "extend_attention": lambda: extend_attention(q, kc, vc, pt, zero, ext, zero, t, page,
                                                     d**-0.5),
        "silu_and_mul": lambda: activation.silu_and_mul(gu),
        "F.linear qkv": lambda: F.linear(x, wqkv),
        "F.linear o": lambda: F.linear(q.reshape(t, -1), wo),
        "torch.empty": lambda: torch.empty((t, hq, d), dtype=dt, device=dev),
        "split+reshape (no launch)": lambda: [a.reshape(t, -1, d) for a in qkv.split(
            [hq * d, hk * d, hk * d], -1)],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=300)
    args = ap.parse_args()
    dev = "cuda"
    res = {"commit": os.environ.get("ANYWARE_COMMIT", "unknown"),
           "device": torch.cuda.get_device_name(), "torch": torch.__version__}
    for t in (1, 1024):
        rows = {}
        for name, fn in ops(t, dev).items():
            rows[name] = bench(fn, args.n)
            print(t, name, rows[name], flush=True)
        res[f"tokens_{t}"] = rows
    with open(args.out, "w") as f:
        json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
