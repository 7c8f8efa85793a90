"""What programmatic dependent launch (PDL) saves per kernel in a CUDA graph (issue 21, 14).

A batch-1 decode step is a chain of ~450-570 small kernels replayed from one graph (W1: 449;
W5: 567), and the profiles put a floor of ~2 us under each however few bytes it reads. With
PDL (Hopper and later) a kernel launched with the programmatic-serialisation attribute may be
scheduled while its predecessor still runs; it waits (``griddepcontrol.wait``) before
reading anything, so the result is the same. This times chains replayed from a graph, PDL
off and on, for:

* ``triton``: N one-row RMSNorm-like Triton kernels back to back (4096 wide);
* ``layer``: W5's per-layer mix: a one-row cuBLAS GEMV (2048 -> 5120), three tiny Triton
  kernels, a GEMV (4096 -> 2048), a Triton norm, a router GEMV (2048 -> 128), two Triton
  kernels; x 48 layers (cuBLAS kernels are launched by torch without the attribute).

    python benchmarks/kernels/pdl_chain.py --out pdl_chain.json
"""

from __future__ import annotations

import argparse
import json

import torch
import triton
import triton.language as tl


@triton.jit
def _row_kernel(x_ptr, w_ptr, y_ptr, N, GDC: tl.constexpr, BLOCK: tl.constexpr):
    if GDC:
        tl.extra.cuda.gdc_wait()  # everything written before this launch is visible
        tl.extra.cuda.gdc_launch_dependents()
    cols = tl.arange(0, BLOCK)
    m = cols < N
    x = tl.load(x_ptr + cols, mask=m, other=0.0).to(tl.float32)
    w = tl.load(w_ptr + cols, mask=m, other=0.0).to(tl.float32)
    y = x * tl.rsqrt(tl.sum(x * x, 0) / N + 1e-6) * w
    tl.store(y_ptr + cols, y.to(y_ptr.dtype.element_ty), mask=m)


def row(x, w, y, pdl: bool):
    n = x.numel()
    _row_kernel[(1,)](x, w, y, n, GDC=pdl, BLOCK=triton.next_power_of_2(n), num_warps=4,
                      launch_pdl=pdl)
    return y


def triton_chain(n: int, pdl: bool):
    bufs = [torch.randn(4096, device="cuda", dtype=torch.bfloat16) for _ in range(2)]
    w = torch.ones(4096, device="cuda", dtype=torch.bfloat16)

    def fn():
        for i in range(n):
            row(bufs[i % 2], w, bufs[(i + 1) % 2], pdl)
        return bufs[n % 2]
    return fn, n


def layer_chain(layers: int, pdl: bool):
    dt = torch.bfloat16
    h = 2048
    w_qkv = torch.randn(5120, h, device="cuda", dtype=dt) * 0.02
    w_o = torch.randn(h, 4096, device="cuda", dtype=dt) * 0.02
    w_r = torch.randn(128, h, device="cuda", dtype=dt) * 0.02
    g = torch.ones(8192, device="cuda", dtype=dt)
    x = torch.randn(1, h, device="cuda", dtype=dt)
    a = torch.empty(1, 5120, device="cuda", dtype=dt)
    b = torch.empty(1, 5120, device="cuda", dtype=dt)
    o = torch.empty(1, 4096, device="cuda", dtype=dt)
    r = torch.empty(1, 128, device="cuda", dtype=dt)
    r2 = torch.empty(1, 128, device="cuda", dtype=dt)
    xn = torch.empty(1, h, device="cuda", dtype=dt)

    def fn():
        for _ in range(layers):
            torch.mm(x, w_qkv.t(), out=a)
            row(a, g, b, pdl)
            row(b, g, a, pdl)
            row(a[:, :4096], g, o, pdl)
            torch.mm(o, w_o.t(), out=x)
            row(x, g, xn, pdl)
            torch.mm(xn, w_r.t(), out=r)
            row(r, g, r2, pdl)
            row(xn, g, x, pdl)
        return x
    return fn, layers * 9


def time_graph(make, pdl: bool, reps: int = 50) -> dict:
    fn, kernels = make(pdl)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    for _ in range(5):
        graph.replay()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    best = []
    for _ in range(5):
        start.record()
        for _ in range(reps):
            graph.replay()
        end.record()
        torch.cuda.synchronize()
        best.append(start.elapsed_time(end) / reps)
    ms = min(best)
    return {"ms_per_replay": round(ms, 4), "kernels": kernels,
            "us_per_kernel": round(ms * 1e3 / kernels, 3)}


def check_same(make) -> float:
    """The chain's output with PDL off and on (same inputs): max abs difference."""
    torch.manual_seed(0)
    off = make(False)[0]().clone()
    torch.manual_seed(0)
    on = make(True)[0]().clone()
    torch.cuda.synchronize()
    return float((off.float() - on.float()).abs().max())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    cases = {
        "triton_300": lambda pdl: triton_chain(300, pdl),
        "w5_layers_48": lambda pdl: layer_chain(48, pdl),
    }
    res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
           "triton": triton.__version__}
    for name, make in cases.items():
        entry = {}
        for _rnd in range(2):  # alternated: off, on, off, on
            for pdl in (False, True):
                entry.setdefault("pdl" if pdl else "plain", []).append(time_graph(make, pdl))
        entry["max_abs_diff_off_vs_on"] = check_same(make)
        res[name] = entry
        print(name, json.dumps(entry), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
