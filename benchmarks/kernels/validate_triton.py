"""Validate and time the portable Triton attention kernels on one GPU (Llama-3.1-8B shape).

Checks decode / extend attention against the torch reference at real shapes (32 q heads,
8 kv heads, head dim 128, bf16, page sizes 1/16/64, batch 1..64, sequences up to 4096), then
times them with ``triton.testing.do_bench`` (median) rotating over several disjoint KV copies
so the L2 cache does not serve repeats. Writes JSON to ``--out``.

    python benchmarks/kernels/validate_triton.py --out $OUT/kernels.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
import torch.nn.functional as F
import triton
from anyware.kernels.reference import paged_attention
from anyware.kernels.triton import decode_attention, extend_attention
from anyware.kernels.triton.decode_attention import choose_num_splits, decode_workspace
from triton.testing import do_bench

HQ, HKV, D = 32, 8, 128
DT = torch.bfloat16
DEV = "cuda"


def paged(seq_lens, page_size, copies=1):
    """Caches holding ``copies`` disjoint page sets and one shuffled page table per copy."""
    bsz = len(seq_lens)
    pages = max(-(-s // page_size) for s in seq_lens)
    per = bsz * pages
    num_pages = copies * per + 1
    kc = torch.randn(num_pages * page_size, HKV, D, dtype=DT, device=DEV)
    vc = torch.randn_like(kc)
    tables = []
    for c in range(copies):
        perm = torch.randperm(per, device=DEV) + 1 + c * per
        tables.append(perm.view(bsz, pages).int())
    return kc, vc, tables


def rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


def check_decode(page_size, seq_lens):
    kc, vc, (pt,) = paged(seq_lens, page_size)
    q = torch.randn(len(seq_lens), HQ, D, dtype=DT, device=DEV)
    seq = torch.tensor(seq_lens, dtype=torch.int32, device=DEV)
    ns = choose_num_splits(len(seq_lens), HKV, max(seq_lens))
    out = torch.full_like(q, float("nan"))
    decode_attention(q, kc, vc, pt, seq, page_size, D**-0.5, ns, out=out)
    ref = paged_attention(q, kc, vc, pt, page_size, [s - 1 for s in seq_lens],
                          [1] * len(seq_lens), D**-0.5)
    return rel(out, ref), bool(torch.isnan(out).any())


def check_extend(page_size, prefix, ext):
    seq = [p + e for p, e in zip(prefix, ext)]
    kc, vc, (pt,) = paged(seq, page_size)
    q = torch.randn(sum(ext), HQ, D, dtype=DT, device=DEV)
    i32 = lambda x: torch.tensor(x, dtype=torch.int32, device=DEV)  # noqa: E731
    starts = [sum(ext[:i]) for i in range(len(ext))]
    out = torch.full_like(q, float("nan"))
    extend_attention(q, kc, vc, pt, i32(prefix), i32(ext), i32(starts), max(ext), page_size,
                     D**-0.5, out=out)
    ref = paged_attention(q, kc, vc, pt, page_size, prefix, ext, D**-0.5)
    return rel(out, ref), bool(torch.isnan(out).any())


def time_decode(page_size, bsz, seq_len, num_splits=None, copies=None):
    kv_bytes = bsz * seq_len * HKV * D * 2 * 2
    copies = copies or max(1, min(8, (256 << 20) // max(kv_bytes, 1)))
    kc, vc, tables = paged([seq_len] * bsz, page_size, copies)
    q = torch.randn(bsz, HQ, D, dtype=DT, device=DEV)
    seq = torch.full((bsz,), seq_len, dtype=torch.int32, device=DEV)
    ns = num_splits or choose_num_splits(bsz, HKV, seq_len)
    ws = decode_workspace(bsz, HQ, ns, D, DEV)
    out = torch.empty_like(q)
    state = {"i": 0}

    def fn():
        state["i"] = (state["i"] + 1) % copies
        decode_attention(q, kc, vc, tables[state["i"]], seq, page_size, D**-0.5, ns,
                         out=out, workspace=ws)

    ms = do_bench(fn, warmup=25, rep=100, return_mode="median")
    moved = kv_bytes + 2 * q.numel() * 2 + bsz * -(-seq_len // page_size) * 4
    return {"page_size": page_size, "batch": bsz, "seq_len": seq_len, "num_splits": ns,
            "ms": ms, "GBps": moved / ms / 1e6, "pct_of_3000GBps": moved / ms / 1e6 / 30}


def time_extend(page_size, bsz, prefix, ext):
    seq = [prefix + ext] * bsz
    kc, vc, (pt,) = paged(seq, page_size)
    q = torch.randn(bsz * ext, HQ, D, dtype=DT, device=DEV)
    pre = torch.full((bsz,), prefix, dtype=torch.int32, device=DEV)
    exl = torch.full((bsz,), ext, dtype=torch.int32, device=DEV)
    st = torch.arange(bsz, dtype=torch.int32, device=DEV) * ext
    out = torch.empty_like(q)
    ms = do_bench(lambda: extend_attention(q, kc, vc, pt, pre, exl, st, ext, page_size,
                                           D**-0.5, out=out),
                  warmup=25, rep=100, return_mode="median")
    # causal: token j attends prefix + j + 1 positions; QK^T and PV: 4 flops per (q, k, d)
    pairs = bsz * sum(prefix + j + 1 for j in range(ext))
    flops = 4 * pairs * HQ * D
    row = {"page_size": page_size, "batch": bsz, "prefix": prefix, "extend": ext, "ms": ms,
           "TFLOPs": flops / ms / 1e9}
    if prefix == 0:  # same problem through torch SDPA (contiguous K/V, no paging) for scale
        qs = q.view(bsz, ext, HQ, D).transpose(1, 2)
        ks = torch.randn(bsz, HKV, ext, D, dtype=DT, device=DEV)
        vs = torch.randn_like(ks)
        sdpa = do_bench(lambda: F.scaled_dot_product_attention(qs, ks, vs, is_causal=True,
                                                               enable_gqa=True),
                        warmup=25, rep=100, return_mode="median")
        row["sdpa_ms"] = sdpa
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    t0 = time.time()
    env = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
           "cuda": torch.version.cuda, "triton": triton.__version__,
           "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    print(env, flush=True)
    checks = []
    for ps in (1, 16, 64):
        for seqs in ([1, 17, 4096], [int(x) for x in torch.randint(1, 4097, (64,))]):
            err, nan = check_decode(ps, seqs)
            checks.append({"kind": "decode", "page_size": ps, "batch": len(seqs), "rel_err": err,
                           "nan": nan, "ok": err < 2e-2 and not nan})
        for prefix, ext in (([0, 0], [1000, 37]), ([2048, 5, 300], [512, 1, 4])):
            err, nan = check_extend(ps, prefix, ext)
            checks.append({"kind": "extend", "page_size": ps, "prefix": prefix, "extend": ext,
                           "rel_err": err, "nan": nan, "ok": err < 2e-2 and not nan})
    for c in checks:
        print("check", c, flush=True)
    try:
        from graph_check import check_graphs

        graphs = check_graphs()
    except Exception as exc:  # report, keep timing
        graphs = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print("graphs", graphs, flush=True)
    decode = []
    for ps in (16, 1, 64):
        for bsz, seq in ((1, 4096), (8, 4096), (32, 2048), (64, 1024), (64, 4096)):
            if ps != 16 and (bsz, seq) not in ((1, 4096), (64, 4096)):
                continue
            decode.append(time_decode(ps, bsz, seq))
    for bsz in (1, 64):  # split-count sweep around the heuristic
        for ns in (1, 4, 8, 16, 32):
            decode.append(time_decode(16, bsz, 4096, num_splits=ns) | {"sweep": True})
    for r in decode:
        print("decode", r, flush=True)
    extend = [time_extend(16, 1, 0, 1024), time_extend(16, 1, 0, 4096),
              time_extend(16, 4, 2048, 512), time_extend(1, 1, 0, 1024),
              time_extend(64, 1, 0, 1024)]
    for r in extend:
        print("extend", r, flush=True)
    result = {"env": env, "checks": checks, "graphs": graphs, "decode": decode, "extend": extend,
              "all_ok": all(c["ok"] for c in checks), "wall_s": time.time() - t0}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print("\n| kind | page | batch | seq/ext | splits | ms | GB/s or TFLOP/s |")
    for r in decode:
        print(f"| decode | {r['page_size']} | {r['batch']} | {r['seq_len']} | {r['num_splits']} "
              f"| {r['ms']:.4f} | {r['GBps']:.0f} GB/s ({r['pct_of_3000GBps']:.0f}%) |")
    for r in extend:
        print(f"| extend | {r['page_size']} | {r['batch']} | {r['prefix']}+{r['extend']} | - "
              f"| {r['ms']:.4f} | {r['TFLOPs']:.0f} TFLOP/s sdpa={r.get('sdpa_ms', '-')} |")
    print("graphs ok:", graphs.get("ok"), "all checks ok:", result["all_ok"], "wall", round(result["wall_s"], 1))


if __name__ == "__main__":
    main()
