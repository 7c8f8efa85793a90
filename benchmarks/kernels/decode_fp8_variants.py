"""Probe: the paged decode kernel's load variants over an fp8 and a bf16 cache.

Session 12's Nsight Compute profile of the kernel over an fp8 cache at 1,024 rows
(``benchmarks/gpu/ncu_decode.sh``): 147 registers per thread (occupancy 18.75%, limited by
registers; 96 and 31% over a bf16 cache), 1.44x the instructions per row of the bf16 pass,
and "only 5.1 of the 32 bytes transmitted per sector are utilized by each thread" for its
global loads: narrow loads, which per-element head-dim masks can cause. This times the
production ``decode_attention`` with

* ``even_dims`` (no head-dim masks where the head dim is a power of two; since session 12
  the default) against the masked loads of before,
* ``k_rows`` (K tiles loaded as ``[positions, D]`` and transposed for the dot),

for block 64 / 128 and 2 / 3 stages at 4 warps, one split: the fp8 cache at ``--batch``
rows, the bf16 cache at ``--bf16-batch`` (``--context`` tokens each, pages shuffled through
the pool, as ``decode_sweep.py``). Writes ``--out`` (JSON) and, with ``--opts-out``, the
``--platform-opt`` flags of the fastest fp8 variant when it beats the masked default by
``--min-gain`` (else nothing), for a W2 run on the same machine.

    python3 benchmarks/kernels/decode_fp8_variants.py --out $OUT/decode_variants.json   # H200
    python3 benchmarks/kernels/decode_fp8_variants.py --smoke --out /tmp/v.json         # CPU
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _caller(decode_attention, q, kc, vc, tables, seq, ws, copies, out, state, cfg, page, d):
    """One decode-attention launch per call, cycling through the cache copies' page tables."""

    def call():
        state["i"] = (state["i"] + 1) % copies
        decode_attention(q, kc, vc, tables[state["i"]], seq, page, d**-0.5, 1, out=out,
                         workspace=ws, block_n=cfg["block_n"], num_warps=4,
                         num_stages=cfg["num_stages"], even_dims=cfg["even_dims"],
                         k_rows=cfg["k_rows"])
    return call


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--bf16-batch", type=int, default=256)
    ap.add_argument("--context", type=int, default=1048)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--peak-gbps", type=float, default=4300.0)
    ap.add_argument("--min-gain", type=float, default=0.03)
    ap.add_argument("--out", required=True)
    ap.add_argument("--opts-out", default=None)
    ap.add_argument("--smoke", action="store_true", help="CPU interpreter, tiny shape")
    args = ap.parse_args(argv)
    blocks, stages = (64, 128), (2, 3)
    if args.smoke:
        os.environ["TRITON_INTERPRET"] = "1"
        args.batch, args.bf16_batch, args.context, args.reps = 2, 2, 40, 1
        blocks, stages = (16,), (1,)
    from anyware.kernels.triton.decode_attention import decode_attention, decode_workspace
    from decode_sweep import HKV, HQ, PAGE, D, build_cache, time_calls

    cuda = not args.smoke
    device = torch.device("cuda" if cuda else "cpu")
    rows: list[dict] = []
    result = {"context": args.context, "rows": rows}
    for kv, batch in (("fp8", args.batch), ("bf16", args.bf16_batch)):
        dtype = torch.float8_e4m3fn if kv == "fp8" else torch.bfloat16
        elem = dtype.itemsize
        copies = max(1, min(8, -(-(512 << 20) // (batch * args.context * HKV * D * 2 * elem))))
        kc, vc, tables, seq = build_cache(batch, args.context, 0.0, dtype, copies, device)
        q = torch.randn((batch, HQ, D), dtype=torch.bfloat16, device=device)
        moved = int(seq.sum()) * HKV * D * 2 * elem + 2 * q.numel() * 2
        ws = decode_workspace(batch, HQ, 1, D, device)
        ref = None
        for even, k_rows, bn, st in itertools.product((False, True), (False, True), blocks,
                                                      stages):
            if k_rows and not even:
                continue
            cfg = dict(kv=kv, batch=batch, even_dims=even, k_rows=k_rows, block_n=bn,
                       num_stages=st, num_warps=4)
            out = torch.empty_like(q)
            state = {"i": 0}
            call = _caller(decode_attention, q, kc, vc, tables, seq, ws, copies, out, state, cfg,
                           PAGE, D)
            try:
                cfg["ms"] = time_calls(call, 2, args.reps, cuda)
                cfg["pct_peak"] = round(moved / cfg["ms"] / 1e6 / args.peak_gbps * 100, 1)
                state["i"] = copies - 1  # the next call reads copy 0, as ref's first did
                call()
                ref = out.clone() if ref is None else ref
                cfg["max_abs_diff"] = float((out.float() - ref.float()).abs().max())
            except Exception as exc:  # e.g. shared memory: a result
                cfg["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
            rows.append(cfg)
            print(json.dumps(cfg), flush=True)
            Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    fp8 = [r for r in rows if r["kv"] == "fp8" and "ms" in r]
    base = next((r for r in fp8 if not r["even_dims"] and r["block_n"] == blocks[0]
                 and r["num_stages"] == stages[0]), None)
    best = min(fp8, key=lambda r: r["ms"], default=None)
    result["fp8_masked_default"], result["fp8_best"] = base, best
    gain = base["ms"] / best["ms"] - 1 if base and best else 0.0
    result["fp8_gain"] = round(gain, 4)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"== fp8 masked default {base and base['ms']:.4} ms, best {best and best['ms']:.4} ms "
          f"({json.dumps(best)}): gain {gain:+.1%}")
    if args.opts_out:
        opts = ""
        if best and gain >= args.min_gain:
            opts = " ".join(f"--platform-opt triton_decode_{k}={json.dumps(best[k])}"
                            for k in ("even_dims", "k_rows", "block_n", "num_stages"))
        Path(args.opts_out).write_text(opts + "\n")


if __name__ == "__main__":
    main()
