"""Probe: does an fp8 KV cache decode faster with V stored transposed within each page?

The split-KV decode kernel reads an fp8 (e4m3) cache at ~53% of the H200's bandwidth where a
bf16 cache reaches 96% (docs/performance.md, sessions 10-11), at the same elements per second.
One suspect (session 11): in ``P @ V`` the V tile is the second operand with its reduction
dimension (positions) strided and its head dimension contiguous; for 16-bit elements the GPU
transposes that on the way from shared memory (``ldmatrix.trans``), for 8-bit ones Hopper has
no such load. Stored as ``[pages, Hkv, D, PAGE]`` ("V^T pages": each page's positions of one
head and one channel contiguous, a whole page of one head 2 KB contiguous in fp8), the V tile
is read with positions contiguous, as the K tile already is.

This script times, at W2's fp8 steady state (``--batch`` requests of ``--context`` tokens, one
layer, pages shuffled through the pool, as ``decode_sweep.py``):

* ``nhd``: the production kernel (``anyware.kernels.triton.decode_attention``) on the NHD cache;
* ``vt``: a copy of its one-split pass reading V from V^T pages (K unchanged), defined here;

for each ``--block-n`` x ``--num-warps`` x ``--num-stages``, with the max abs difference of
``vt`` from ``nhd`` (same math, so within fp32 summation order). If ``vt`` is much faster, the
layout is worth building through the KV store, the extend kernel and the pool
(``KVLayout``); if not, the suspect is cleared.

    python3 benchmarks/kernels/decode_fp8_vt_probe.py --out $OUT/decode_fp8_vt.json   # ~1 min, H200
    python3 benchmarks/kernels/decode_fp8_vt_probe.py --smoke --out /tmp/vt.json      # CPU interpreter
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


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--context", type=int, default=1048)
    ap.add_argument("--block-n", default="64,128")
    ap.add_argument("--num-warps", default="4,8")
    ap.add_argument("--num-stages", default="2,3")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--peak-gbps", type=float, default=4300.0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--smoke", action="store_true", help="CPU interpreter, tiny shape")
    args = ap.parse_args(argv)
    if args.smoke:
        os.environ["TRITON_INTERPRET"] = "1"
        args.batch, args.context, args.reps = 3, 40, 1
        args.block_n, args.num_warps, args.num_stages = "16", "4", "1"
    import triton
    import triton.language as tl
    from anyware.kernels.triton.decode_attention import decode_attention, decode_workspace
    from decode_sweep import HKV, HQ, PAGE, D, build_cache, time_calls

    @triton.jit
    def vt_kernel(q_ptr, kc_ptr, vt_ptr, pt_ptr, seq_ptr, o_ptr, stride_qt, stride_qh,
                  stride_kcs, stride_kch, stride_vp, stride_vh, stride_pt, stride_ot,
                  stride_oh, scale, G: tl.constexpr, D: tl.constexpr, PAGE: tl.constexpr,
                  BLOCK_G: tl.constexpr, BLOCK_N: tl.constexpr, UPCAST: tl.constexpr):
        b = tl.program_id(0).to(tl.int64)
        hk = tl.program_id(1)
        seq_len = tl.load(seq_ptr + b)
        g = tl.arange(0, BLOCK_G)
        gmask = g < G
        heads = hk * G + g
        d = tl.arange(0, D)
        q = tl.load(q_ptr + b * stride_qt + heads[:, None] * stride_qh + d[None, :],
                    mask=gmask[:, None], other=0.0)
        q = q.to(tl.float32) if UPCAST else tl.clamp(q.to(tl.float32), -65504.0,
                                                      65504.0).to(tl.float16)
        m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_G], tl.float32)
        acc = tl.zeros([BLOCK_G, D], tl.float32)
        qk_scale = scale * 1.4426950408889634
        for n0 in range(0, seq_len, BLOCK_N):
            pos = n0 + tl.arange(0, BLOCK_N)
            nmask = pos < seq_len
            page = tl.load(pt_ptr + b * stride_pt + pos // PAGE, mask=nmask, other=0).to(tl.int64)
            k = tl.load(kc_ptr + (page * PAGE + pos % PAGE)[None, :] * stride_kcs
                        + hk * stride_kch + d[:, None], mask=nmask[None, :], other=0.0)
            s = tl.dot(q, k.to(q.dtype)) * qk_scale
            s = tl.where(nmask[None, :], s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            alpha = tl.exp2(m_i - m_new)
            p = tl.exp2(s - m_new[:, None])
            l_i = l_i * alpha + tl.sum(p, 1)
            # V^T pages: [DV, BLOCK_N] with the positions of a page contiguous
            v_t = tl.load(vt_ptr + page[None, :] * stride_vp + hk * stride_vh
                          + d[:, None] * PAGE + (pos % PAGE)[None, :], mask=nmask[None, :],
                          other=0.0)
            acc = acc * alpha[:, None] + tl.dot(p.to(q.dtype), tl.trans(v_t.to(q.dtype)))
            m_i = m_new
        out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
        tl.store(o_ptr + b * stride_ot + heads[:, None] * stride_oh + d[None, :],
                 out.to(o_ptr.dtype.element_ty), mask=gmask[:, None])

    cuda = not args.smoke
    device = torch.device("cuda" if cuda else "cpu")
    fp8 = torch.float8_e4m3fn
    kc, vc, tables, seq = build_cache(args.batch, args.context, 0.0, fp8, 1, device)
    table = tables[0]
    # the same V values in V^T pages: [pages, PAGE, Hkv, D] -> [pages, Hkv, D, PAGE]
    vt = vc.view(-1, PAGE, HKV, D).permute(0, 2, 3, 1).contiguous()
    q = torch.randn((args.batch, HQ, D), dtype=torch.bfloat16, device=device)
    moved = int(seq.sum()) * HKV * D * 2 + 2 * q.numel() * 2
    rows = []

    def nhd(cfg):
        out = torch.empty_like(q)
        ws = decode_workspace(args.batch, HQ, 1, D, device)
        return out, lambda: decode_attention(q, kc, vc, table, seq, PAGE, D**-0.5, 1, out=out,
                                             workspace=ws, block_n=cfg["block_n"],
                                             num_warps=cfg["num_warps"],
                                             num_stages=cfg["num_stages"])

    def vtk(cfg):
        out = torch.empty_like(q)
        return out, lambda: vt_kernel[(args.batch, HKV)](
            q, kc, vt, table, seq, out, q.stride(0), q.stride(1), kc.stride(0), kc.stride(1),
            vt.stride(0), vt.stride(1), table.stride(0), out.stride(0), out.stride(1),
            D**-0.5, G=HQ // HKV, D=D, PAGE=PAGE, BLOCK_G=16, BLOCK_N=cfg["block_n"],
            UPCAST=not cuda, num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])

    ints = lambda text: [int(x) for x in text.split(",") if x]  # noqa: E731
    for bn, w, st in itertools.product(ints(args.block_n), ints(args.num_warps),
                                       ints(args.num_stages)):
        cfg = dict(block_n=bn, num_warps=w, num_stages=st)
        outs = {}
        for name, make in (("nhd", nhd), ("vt", vtk)):
            row = dict(cfg, layout=name)
            try:
                out, fn = make(cfg)
                row["ms"] = time_calls(fn, 2, args.reps, cuda)
                fn()
                outs[name] = out.float()
                row["pct_peak"] = round(moved / row["ms"] / 1e6 / args.peak_gbps * 100, 1)
            except Exception as exc:  # shared memory: a result
                row["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
            if name == "vt" and len(outs) == 2:
                row["max_abs_diff"] = float((outs["vt"] - outs["nhd"]).abs().max())
            rows.append(row)
            print(json.dumps(row), flush=True)
            Path(args.out).write_text(json.dumps({"batch": args.batch, "context": args.context,
                                                  "bytes_per_call": moved, "rows": rows},
                                                 indent=1) + "\n")
    best = {n: min((r for r in rows if r.get("layout") == n and "ms" in r),
                   key=lambda r: r["ms"], default=None) for n in ("nhd", "vt")}
    print("== fastest per layout:", json.dumps(best))


if __name__ == "__main__":
    main()
