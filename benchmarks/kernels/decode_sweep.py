"""Launch-configuration sweep of the paged split-KV decode attention kernel on one GPU.

Steady-state decode of ``--batch`` requests with ``--context`` tokens each (Llama-3.1-8B's
attention: 32 query heads, 8 KV heads, head dim 128, page size 16; bf16 queries) over an NHD
paged cache whose pages are shuffled through the pool, as a long-running server's are. One
timed call is one layer's ``decode_attention`` (split pass + merge); its median over ``--reps``
back-to-back calls (``torch.cuda.Event``) after ``--warmup`` calls that also compile. Grid:
``block_n`` x ``num_warps`` x ``num_stages`` x ``num_splits`` (plus ``choose_num_splits``'s
pick); a combination that fails to compile (shared memory) is recorded with its error. Each
row: ms, effective GB/s over the KV bytes read (batch x context x Hkv x D x 2 x element size)
plus q and out, % of ``--peak-gbps`` (4.3 TB/s: an H200's reachable HBM bandwidth), and the
max abs difference from the default configuration's output (flagged above 1e-2). Prints the
rows fastest first with the ``--platform-opt triton_decode_*`` settings that select the
fastest in ``benchmarks/run.py`` (or ``anyware ... --platform-option``), and
rewrites ``--out`` (JSON) after every row, so a run cut short still leaves its results.

    # from the repository root; PYTHONPATH=$PWD/src where anyware is not installed
    # W2 fp8-KV steady state (1024 x ~1048 tokens; 2.2 GB of KV per layer)
    python3 benchmarks/kernels/decode_sweep.py --kv-dtype fp8 --out $OUT/decode_sweep_fp8.json
    # W2 bf16 steady state
    python3 benchmarks/kernels/decode_sweep.py --batch 256 --kv-dtype bf16 \
        --out $OUT/decode_sweep_bf16.json
    # CPU check of the script itself (Triton interpreter, tiny shape, 2 configurations)
    python3 benchmarks/kernels/decode_sweep.py --smoke --out /tmp/decode_sweep_smoke.json

Estimated H200 runtime of the full default grid (54 configurations at batch 1024, where the
default split count is 1; not measured yet): ~2 min, mostly Triton compiles (~1-2 s each; the
timing is ~0.1 s each); ``--budget-s`` (default 170) starts no new row past that time.
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # env_info

HQ, HKV, D, PAGE = 32, 8, 128, 16
KV_DTYPES = {"bf16": torch.bfloat16, "fp8": torch.float8_e4m3fn}
FLAG_DIFF = 1e-2


def build_cache(batch: int, context: int, spread: float, kv_dtype, copies: int, device, seed=0):
    """K/V pools holding ``copies`` page sets of the batch, one page table per copy over
    pages drawn at random from the whole pool (page 0 unused), and ragged lengths."""
    gen = torch.Generator().manual_seed(seed)
    lo, hi = max(1, round(context * (1 - spread))), max(1, round(context * (1 + spread)))
    lens = torch.randint(lo, hi + 1, (batch,), generator=gen)
    pages = -(-int(lens.max()) // PAGE)
    num_pages = copies * batch * pages + 1
    perm = (torch.randperm(num_pages - 1, generator=gen) + 1).to(torch.int32)
    tables = [t.reshape(batch, pages).to(device) for t in perm.split(batch * pages)]
    caches = []
    for _ in range(2):
        x = torch.empty((num_pages * PAGE, HKV, D), dtype=kv_dtype, device=device)
        for chunk in x.split(1 << 20):  # bounded temporaries: 1M slots at a time
            chunk.copy_(torch.randn(chunk.shape, dtype=torch.bfloat16, device=device)
                        .clamp_(-4, 4))
        caches.append(x)
    return caches[0], caches[1], tables, lens.to(torch.int32).to(device)


def time_calls(fn, warmup: int, reps: int, cuda: bool) -> float:
    """Median ms of ``reps`` back-to-back calls (GPU events; wall clock on the CPU)."""
    for _ in range(warmup):
        fn()
    if not cuda:
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)
    torch.cuda.synchronize()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
              for _ in range(reps)]
    for start, end in events:
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in events)


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--context", type=int, default=1048)
    ap.add_argument("--spread", type=float, default=0.0,
                    help="lengths uniform in context x (1 +- spread); 0: all equal")
    ap.add_argument("--kv-dtype", choices=sorted(KV_DTYPES), default="fp8")
    ap.add_argument("--block-n", type=ints, default=[32, 64, 128])
    ap.add_argument("--num-warps", type=ints, default=[4, 8])
    ap.add_argument("--num-stages", type=ints, default=[2, 3, 4])
    ap.add_argument("--fp16-compute", type=ints, default=[1],
                    help="fp16_compute values (an fp8 cache's tiles in fp16: 1, default; 0: in "
                         "the query's dtype, as before session 10)")
    ap.add_argument("--splits", type=ints, default=[1, 2, 4],
                    help="num_splits values (choose_num_splits's pick is always added)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--heads-first-top", type=int, default=6,
                    help="re-run this many fastest configurations with heads_first=True")
    ap.add_argument("--peak-gbps", type=float, default=4300.0)
    ap.add_argument("--budget-s", type=float, default=170.0,
                    help="start no new configuration after this many seconds (0: no limit)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--smoke", action="store_true",
                    help="CPU under TRITON_INTERPRET=1: tiny shape, 2 configurations")
    args = ap.parse_args(argv)
    if args.smoke:
        args.batch, args.context, args.warmup, args.reps = 3, 40, 1, 2
        args.heads_first_top = 1
    return args


def make_grid(args: argparse.Namespace, default: dict) -> list[dict]:
    """The default configuration first (the reference of every diff), then the grid, fewest
    splits first (more splits add partial-output traffic: the rows a ``--budget-s`` cut drops)."""
    if args.smoke:
        return [default, dict(block_n=32, num_warps=8, num_stages=3,
                              num_splits=max(2, default["num_splits"]))]
    splits = sorted(set(args.splits) | {default["num_splits"]})
    grid = [dict(block_n=b, num_warps=w, num_stages=s, num_splits=n, fp16_compute=bool(f))
            for f, n, b, w, s in itertools.product(args.fp16_compute, splits, args.block_n,
                                                   args.num_warps, args.num_stages)]
    return [default] + [cfg for cfg in grid if cfg != default]


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.smoke:  # before the first @triton.jit is defined
        os.environ["TRITON_INTERPRET"] = "1"
    import anyware
    import triton
    from anyware.kernels.triton.decode_attention import (
        choose_num_splits,
        decode_attention,
        decode_workspace,
    )
    from env_info import env_info

    t0 = time.perf_counter()
    if "num_stages" not in inspect.signature(decode_attention).parameters:
        raise SystemExit(f"{anyware.__file__}: an anyware without decode_attention(num_warps=, "
                         "num_stages=): put this checkout's src/ first on PYTHONPATH")
    cuda = not args.smoke
    if cuda and not torch.cuda.is_available():
        raise SystemExit("no GPU visible: run on a GPU, or pass --smoke (CPU interpreter)")
    device = torch.device("cuda" if cuda else "cpu")
    kv_dtype = KV_DTYPES[args.kv_dtype]
    elem = torch.empty((), dtype=kv_dtype).element_size()
    kv_bytes = args.batch * args.context * HKV * D * 2 * elem  # estimate, for the copy count
    copies = max(1, min(8, -(-(512 << 20) // kv_bytes)))  # >= 512 MiB: L2 serves no repeat
    kc, vc, tables, seq = build_cache(args.batch, args.context, args.spread, kv_dtype, copies,
                                      device)
    max_len = int(seq.max())
    q = torch.randn((args.batch, HQ, D), dtype=torch.bfloat16, device=device)
    moved = int(seq.sum()) * HKV * D * 2 * elem + 2 * q.numel() * q.element_size()
    default_splits = choose_num_splits(args.batch, HKV, max_len)
    default_block_n = 16 if not cuda else (32 if D > 128 else 64)

    def launch(cfg: dict) -> tuple[float, torch.Tensor]:
        ws = decode_workspace(args.batch, HQ, cfg["num_splits"], D, device)
        out = torch.empty_like(q)
        state = {"i": 0}

        def call():
            state["i"] = (state["i"] + 1) % copies
            decode_attention(q, kc, vc, tables[state["i"]], seq, PAGE, D**-0.5,
                             cfg["num_splits"], out=out, workspace=ws, block_n=cfg["block_n"],
                             fp16_compute=cfg.get("fp16_compute", True),
                             num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
                             heads_first=cfg.get("heads_first", False))

        ms = time_calls(call, args.warmup, args.reps, cuda)
        # the output compared with the default's: always over copy 0's page table
        decode_attention(q, kc, vc, tables[0], seq, PAGE, D**-0.5, cfg["num_splits"],
                         fp16_compute=cfg.get("fp16_compute", True),
                         out=out, workspace=ws, block_n=cfg["block_n"],
                         num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
                         heads_first=cfg.get("heads_first", False))
        return ms, out

    default = dict(block_n=default_block_n, num_warps=4, num_stages=2,
                   num_splits=default_splits, fp16_compute=True)
    grid = make_grid(args, default)
    result = {
        "env": env_info(), "args": vars(args),
        "shape": dict(batch=args.batch, context=args.context, max_len=max_len, hq=HQ,
                      hkv=HKV, head_dim=D, page_size=PAGE, kv_dtype=args.kv_dtype,
                      copies=copies, bytes_per_call=moved),
        "default": default, "triton": triton.__version__, "anyware": anyware.__file__,
        "rows": [],
    }
    print(f"{args.batch} requests x {args.context} tokens, KV {args.kv_dtype}: "
          f"{moved / 1e9:.3f} GB per call; {len(grid)} configurations", flush=True)
    ref = None
    i, second_phase = -1, args.heads_first_top <= 0
    while i + 1 < len(grid):
        i += 1
        cfg = grid[i]
        row = dict(cfg, default=i == 0)
        if args.budget_s and time.perf_counter() - t0 > args.budget_s:
            row["error"] = "skipped: past --budget-s"
        else:
            try:
                ms, out = launch(cfg)
                diff = 0.0 if ref is None else float((out.float() - ref.float()).abs().max())
                ref = out if ref is None else ref
                gbps = moved / ms / 1e6
                row.update(ms=ms, gbps=gbps, pct_peak=100 * gbps / args.peak_gbps,
                           max_abs_diff=diff, flag=not diff <= FLAG_DIFF)  # NaN: flagged
            except Exception as exc:  # a configuration that does not compile is a result
                row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
                if i == 0:
                    raise
        result["rows"].append(row)
        print(fmt(row), flush=True)
        result["elapsed_s"] = round(time.perf_counter() - t0, 1)
        write(args.out, result)
        if i + 1 == len(grid) and not second_phase:
            # second phase: the fastest configurations again with the grid in KV-head order
            second_phase = True
            timed = sorted((r for r in result["rows"] if "ms" in r and not r["flag"]),
                           key=lambda r: r["ms"])[: args.heads_first_top]
            grid += [dict({k: r[k] for k in ("block_n", "num_warps", "num_stages",
                                              "num_splits", "fp16_compute")}, heads_first=True)
                     for r in timed]
    report(result, args.batch)
    write(args.out, result)


def write(path: str, result: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result, indent=1))


def fmt(row: dict) -> str:
    cfg = (f"block_n={row['block_n']:<4} warps={row['num_warps']} stages={row['num_stages']} "
           f"splits={row['num_splits']:<2} {'heads-first' if row.get('heads_first') else '':11s}"
           f"{'' if row.get('fp16_compute', True) else ' tiles-as-q'}")
    if "error" in row:
        return f"{cfg}  {row['error'][:100]}"
    mark = " *default" if row["default"] else ""
    flag = "  !! DIFF" if row["flag"] else ""
    return (f"{cfg}  {row['ms']:8.3f} ms  {row['gbps']:7.0f} GB/s  {row['pct_peak']:5.1f}%  "
            f"diff {row['max_abs_diff']:.1e}{flag}{mark}")


def report(result: dict, batch: int) -> None:
    rows = result["rows"]
    ok = sorted((r for r in rows if "ms" in r), key=lambda r: r["ms"])
    print(f"\n== sorted ({len(ok)} timed, {len(rows) - len(ok)} failed or skipped; "
          f"{result['elapsed_s']} s)")
    for r in ok + [r for r in rows if "ms" not in r]:
        print(fmt(r))
    good = [r for r in ok if not r["flag"]]
    if good:
        best, base = good[0], next(r for r in rows if r["default"])
        # choose_num_splits(batch, HKV, ...) returns n at this batch for n * batch * HKV
        opts = dict(decode_block_n=best["block_n"], decode_num_warps=best["num_warps"],
                    decode_num_stages=best["num_stages"],
                    decode_target_programs=best["num_splits"] * batch * HKV,
                    decode_heads_first=bool(best.get("heads_first")),
                    decode_fp16_compute=bool(best.get("fp16_compute", True)))
        attrs = " ".join(f"--platform-opt triton_{k}={str(v).lower()}" for k, v in opts.items())
        print(f"\nfastest: {best['ms']:.3f} ms vs default {base['ms']:.3f} ms "
              f"({base['ms'] / best['ms']:.2f}x)\nbenchmarks/run.py {attrs}\n"
              "(platform options reach the Triton attention backend before graph capture; "
              "decode_target_programs is the split count at this batch only)")
        result["best"] = dict(best, platform_opts=attrs)


if __name__ == "__main__":
    main()
