"""W5: mixture of experts on one GPU, Qwen3-30B-A3B shape, bf16 dummy weights.

One command, three parts, each writing JSON under ``--out`` (default ``$OUT``):

* ``W5-kernel.json``: the fused-MoE Triton layer at the Qwen3-30B-A3B MoE shape (E=128,
  top-8, H=2048, I=768) as CUDA-graph replays over more-than-L2 weight copies: batch 1 as a
  fraction of the copy bandwidth measured in the same run (bytes = the experts hit + the
  activations), batch 512 as a fraction of a large bf16 matmul's measured rate (and of the
  nominal figures given by ``--peak-gbs``/``--peak-tflops``);
* ``W5.json``: the engine with CUDA graphs and overlap (the platform's defaults): batch-1
  decode ms/step (W1-style 128/256, best of 3 runs' median inter-token latency), offline
  ``--prompts`` x 1024/1024 output tok/s, and our run on the transformers peer's slice;
* beside it (``--peer``), transformers on the same GPU: batch-1 ``generate`` (dynamic cache)
  ms/token and ``generate_batch`` on the slice.

    python benchmarks/gpu/w5_moe.py --peer --out $OUT      # < 8 minutes on an H200

Targets (issue 14): decode <= 1.8 ms/step; offline >= 10x transformers; kernel >= 70% of
bandwidth at batch 1 and >= 60% of bf16 matmul peak at batch 512.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kernels"))
from anyware import Engine
from anyware.bench import Workload, run_offline
from anyware.kernels.reference import ReferenceMoEBackend, moe_route
from anyware.kernels.triton.moe import fused_moe
from anyware.kernels.triton.moe_config import get_config, get_small_config
from anyware.kernels.triton.moe_small import fused_moe_small, use_small_path
from anyware.model.config import PRESETS
from anyware.plugin import MoESpec
from env_info import env_info
from moe_bench import (
    QWEN3_30B_A3B,
    active_bytes,
    copy_bandwidth_gbs,
    layer_flops,
    make_layer,
    matmul_tflops,
    time_fused,
    time_small,
    weight_copies,
)
from peers import hf_transformers as hf

PRESET = "qwen3-30b-a3b"


def kernel_part(args) -> dict:
    s = QWEN3_30B_A3B
    bw = copy_bandwidth_gbs()
    peak = matmul_tflops()
    out = {"shape": s, "copy_bandwidth_gbs": round(bw, 1), "matmul_bf16_tflops": round(peak, 1),
           "nominal_gbs": args.peak_gbs, "nominal_tflops": args.peak_tflops, "batches": {}}
    for tokens in (1, 8, 64, 512, 2048):
        x, logits, w13, w2 = make_layer(s["num_experts"], s["top_k"], s["hidden"], s["inter"], tokens)
        copies = weight_copies(w13, w2)
        cfg = get_config(tokens, s["num_experts"], s["inter"], s["top_k"], torch.bfloat16)
        t = time_fused(x, logits, copies, s["top_k"], cfg)
        nbytes = active_bytes(x, t.pop("ids"), w13, w2)
        rel_err = check_layer(x, logits, w13, w2, s, cfg)
        flops = layer_flops(tokens, s["top_k"], s["hidden"], s["inter"])
        row = {**t, "config": cfg, "active_bytes": nbytes, "rel_err_vs_reference": rel_err}
        if rel_err > 2e-2:
            raise SystemExit(f"fused MoE is wrong at {tokens} tokens: rel err {rel_err:.3g}")
        for key in ("layer_ms", "gemms_ms"):
            row[f"{key}_gbs"] = round(nbytes / t[key] / 1e6, 1)
            row[f"{key}_bw_fraction"] = round(nbytes / t[key] / 1e6 / bw, 3)
            row[f"{key}_tflops"] = round(flops / t[key] / 1e9, 1)
            row[f"{key}_peak_fraction"] = round(flops / t[key] / 1e9 / peak, 3)
        if use_small_path(tokens, s["num_experts"], s["top_k"]):  # what the backend runs here
            small_cfg = get_small_config(s["num_experts"], s["inter"], torch.bfloat16)
            ms = time_small(x, logits, copies, s["top_k"], small_cfg)
            got = fused_moe_small(x[:64], logits[:64], w13, w2, s["top_k"], True, config=small_cfg)
            want = fused_moe(x[:64], *moe_route(logits[:64], s["top_k"], True), w13, w2, cfg)
            row["small_path"] = {"layer_ms": ms, "config": small_cfg,
                                 "gbs": round(nbytes / ms / 1e6, 1),
                                 "bw_fraction": round(nbytes / ms / 1e6 / bw, 3),
                                 "rel_diff_vs_fused": round(float((got.double() - want.double()).norm()
                                                                  / want.double().norm()), 5)}
        out["batches"][tokens] = row
        print(f"kernel tokens={tokens}: {row}", flush=True)
        del x, logits, w13, w2, copies
        torch.cuda.empty_cache()
    return out


def check_layer(x, logits, w13, w2, s, cfg) -> float:
    """Relative error of the fused layer vs the torch reference backend (fp32 math) on the
    same device and inputs (at most 64 tokens)."""
    spec = MoESpec(s["num_experts"], s["top_k"], s["hidden"], s["inter"], x.dtype)
    x, logits = x[:64], logits[:64]
    got = fused_moe(x, *moe_route(logits, s["top_k"], True), w13, w2, cfg).double()
    want = ReferenceMoEBackend(None, spec).forward(x, logits, w13, w2).double()
    return round(float((got - want).norm() / want.norm()), 5)


def free() -> None:
    gc.collect()
    torch.cuda.empty_cache()


def engine(**kw) -> Engine:
    return Engine(PRESET, load_format="dummy", dtype="bfloat16", context_len=4096,
                  show_progress=False, **kw)


def engine_part(args) -> dict:
    res = {}
    e = engine(max_running_requests=8)
    t0 = time.perf_counter()
    wl = Workload(1, 128, 256)
    runs = [run_offline(e, wl).summary() for _ in range(3)]
    best = min(runs, key=lambda r: r["itl_ms_median"])
    active = PRESETS[PRESET].param_count(active=True) * 2
    res["decode_bs1"] = {**best, "ms_per_step": best["itl_ms_median"],
                         "active_weight_bytes": active, "all_runs": runs,
                         "graph_replays": getattr(e.core.worker.strategy, "replays", None),
                         "overlap": getattr(e.core, "overlap", None)}
    print(f"decode bs1: {best['itl_ms_median']} ms/step ({time.perf_counter() - t0:.0f} s)", flush=True)
    e.shutdown()
    e = None
    free()
    e = engine(max_running_requests=args.max_running)
    t0 = time.perf_counter()
    if args.prompts:  # 0: measured elsewhere (e.g. through `anyware bench`)
        res["offline"] = run_offline(e, Workload(args.prompts, 1024, 1024)).summary()
        print(f"offline: {res['offline']['output_tok_s']} tok/s ({time.perf_counter() - t0:.0f} s)",
              flush=True)
    res["offline_on_peer_slice"] = run_offline(e, Workload(args.slice, 256, 256)).summary()
    e.shutdown()
    e = None
    free()
    return res


def hf_config() -> dict:
    c = PRESETS[PRESET]
    return dict(model_type="qwen3_moe", hidden_size=c.hidden_size, num_hidden_layers=c.num_layers,
                num_attention_heads=c.num_heads, num_key_value_heads=c.num_kv_heads,
                head_dim=c.head_dim, intermediate_size=c.intermediate_size,
                moe_intermediate_size=c.moe_intermediate_size, num_experts=c.num_experts,
                num_experts_per_tok=c.num_experts_per_tok, norm_topk_prob=c.norm_topk_prob,
                vocab_size=c.vocab_size, rms_norm_eps=c.rms_norm_eps, rope_theta=c.rope_theta,
                tie_word_embeddings=False, max_position_embeddings=4096)


@torch.no_grad()
def peer_part(args) -> dict:
    model = hf.dummy_model(hf_config(), torch.bfloat16, "cuda")
    prompt = Workload(1, 128, 64).prompts(PRESETS[PRESET].vocab_size)[0]
    ids = torch.tensor([prompt], device="cuda")
    kw = dict(max_new_tokens=64, min_new_tokens=64, do_sample=False, pad_token_id=0)
    model.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=0)  # warm-up
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    model.generate(ids, **kw)
    torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    res = {"generate_bs1": {"new_tokens": 64, "wall_s": round(wall, 3),
                            "ms_per_token": round(wall / 64 * 1e3, 3)}}
    print(f"transformers bs1: {res['generate_bs1']}", flush=True)
    prompts = Workload(args.slice, 256, 256).prompts(PRESETS[PRESET].vocab_size)
    res["generate_batch_slice"] = hf.generate_batch(model, prompts, 256, "cuda")
    print(f"transformers slice: {res['generate_batch_slice']}", flush=True)
    del model
    free()
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "benchmarks/results"))
    ap.add_argument("--peer", action="store_true")
    ap.add_argument("--prompts", type=int, default=1000,
                    help="offline 1024/1024 prompts (0: skip the offline run)")
    ap.add_argument("--slice", type=int, default=32, help="prompts (256/256) for the peer comparison")
    ap.add_argument("--max-running", type=int, default=256)
    ap.add_argument("--parts", default="kernel,engine,peer")
    ap.add_argument("--peak-gbs", type=float, default=4800.0, help="nominal HBM bandwidth")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="nominal dense bf16")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parts = args.parts.split(",")
    info = env_info()
    if "kernel" in parts:
        k = {"workload": "W5-kernel", "env": info, **kernel_part(args)}
        (out / "W5-kernel.json").write_text(json.dumps(k, indent=2))
    res: dict = {"workload": "W5", "env": info, "preset": PRESET}
    if "engine" in parts:
        res["ours"] = engine_part(args)
        (out / "W5.json").write_text(json.dumps(res, indent=2))
    if "peer" in parts and args.peer:
        try:
            res["transformers"] = peer_part(args)
        except Exception as exc:  # record why the peer could not run; ours stays valid
            res["transformers"] = {"error": f"{type(exc).__name__}: {exc}"}
        ours = res.get("ours", {})
        if ours and "error" not in res["transformers"]:
            mine = ours["offline_on_peer_slice"]["output_tok_s"]
            res["speedup_on_slice"] = round(mine / res["transformers"]["generate_batch_slice"]["output_tok_s"], 2)
            res["speedup_bs1"] = round(res["transformers"]["generate_bs1"]["ms_per_token"]
                                       / ours["decode_bs1"]["ms_per_step"], 2)
        (out / "W5.json").write_text(json.dumps(res, indent=2))
    print(json.dumps({k: v for k, v in res.items() if k != "env"}, indent=2, default=str))


if __name__ == "__main__":
    main()
