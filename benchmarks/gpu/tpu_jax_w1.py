"""The tpu platform (JAX through torchax, compiled buckets) on the GPU machine's JAX (CUDA
build) beside the CUDA platform, same process, same W1-style workload.

    python benchmarks/gpu/tpu_jax_w1.py --out $OUT          # < 5 minutes on an H200

W1-style: batch-1 decode, 1 prompt of 128 tokens, 256 greedy output tokens, the
``qwen2.5-0.5b`` preset with dummy weights in bf16 (a small model keeps JAX's compiles short).
The CUDA platform runs first (its defaults: CUDA graphs, overlap), then is shut down; then the
tpu platform runs on JAX's GPU backend (``--platform tpu``; its compiled step, ragged paged
attention in XLA and the sampler inside the program). Reported for both: decode ms/step
(median inter-token latency) and output tok/s; for the tpu run also start-up (compiling every
bucket) and the compile seconds per bucket. Writes ``$OUT/tpu_jax_w1.json``.

When JAX has no GPU (a CPU-only jaxlib, no CUDA plugin), or jax/torchax are missing, the
script says so on stdout, writes the JSON with ``status: "skipped"`` and the reason, and
exits 0. JAX is told not to preallocate GPU memory (torch shares the device).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import traceback
from pathlib import Path

# before JAX starts: share the GPU with torch (no 75% preallocation)
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.35")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PRESET = "qwen2.5-0.5b"


def write(out: Path, result: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "tpu_jax_w1.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "env"}, indent=2))


def jax_gpu_check() -> tuple[bool, str, dict]:
    """Whether JAX sees a GPU; the reason when not; versions."""
    info: dict = {}
    try:
        import jax

        info["jax"] = jax.__version__
        devices = jax.devices()
        info["jax_backend"] = jax.default_backend()
        info["jax_devices"] = [str(d) for d in devices]
        if jax.default_backend() != "gpu":
            return False, (f"JAX's default backend is {jax.default_backend()!r}, not 'gpu' "
                           "(a CPU-only jaxlib or no CUDA plugin: pip install 'jax[cuda13]')"), info
    except Exception as exc:  # no jax, or the CUDA plugin failed to start
        return False, f"JAX could not start: {type(exc).__name__}: {exc}", info
    try:
        from importlib.metadata import version

        info["torchax"] = version("torchax")
    except Exception:
        return False, "torchax is not installed (pip install torchax)", info
    return True, "", info


def w1(engine, prompt_len: int, output_len: int) -> dict:
    from anyware.bench import Workload, run_offline

    res = run_offline(engine, Workload(1, prompt_len, output_len))
    itl = res.itl_ms
    return {"decode_ms_per_step": round(statistics.median(itl), 3) if itl else None,
            "output_tok_s": round(res.output_tok_s, 1), "wall_s": round(res.wall_s, 3),
            "ttft_ms": round(res.ttft_ms[0], 2) if res.ttft_ms else None}


def run_cuda(args) -> dict:
    import torch
    from anyware import Engine

    t0 = time.perf_counter()
    with Engine(PRESET, platform="cuda", load_format="dummy", dtype="bfloat16",
                context_len=args.context_len, max_running_requests=4,
                show_progress=False) as engine:
        startup = time.perf_counter() - t0
        out = w1(engine, args.prompt, args.output)
    torch.cuda.empty_cache()
    return {"platform": "cuda", "startup_s": round(startup, 2), **out}


def run_tpu(args) -> dict:
    from anyware import Engine

    opts = {"tpu_min_token_bucket": "8"}
    t0 = time.perf_counter()
    with Engine(PRESET, platform="tpu", load_format="dummy", dtype="bfloat16",
                context_len=args.context_len, max_running_requests=1,
                chunked_prefill_size=args.prompt, kv_cache_bytes=1 << 30,
                platform_options=opts, show_progress=False) as engine:
        startup = time.perf_counter() - t0
        strategy = engine.core.worker.strategy
        warmed = strategy.compilations
        out = w1(engine, args.prompt, args.output)
        compile_s = {f"T{b.tokens}/B{b.requests}/L{b.logits}": round(s, 2)
                     for b, s in strategy.compile_seconds.items()}
        device = engine.core.platform.device_name() if hasattr(engine.core, "platform") else None
        import jax

        return {"platform": f"tpu (JAX {jax.default_backend()} backend)", "device": device,
                "startup_s": round(startup, 2), "buckets": len(compile_s),
                "compile_s_per_bucket": compile_s,
                "serving_loop_compilations": strategy.compilations - warmed, **out}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "benchmarks/results/tpu"))
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--output", type=int, default=256)
    ap.add_argument("--context-len", type=int, default=512)
    ap.add_argument("--skip-cuda", action="store_true")
    ap.add_argument("--allow-cpu", action="store_true",
                    help="run the tpu part on JAX's CPU backend too (a smoke test of this script)")
    args = ap.parse_args()
    out = Path(args.out)
    from env_info import env_info

    result: dict = {"workload": {"model": PRESET, "dtype": "bfloat16", "weights": "dummy",
                                 "prompt": args.prompt, "output": args.output, "batch": 1},
                    "env": env_info()}
    ok, why, info = jax_gpu_check()
    result["jax"] = info
    if not ok and args.allow_cpu and info.get("jax_backend") == "cpu":
        ok, args.skip_cuda = True, True
    if not ok:
        print(f"SKIPPED: {why}")
        write(out, {**result, "status": "skipped", "reason": why})
        return 0
    if not args.skip_cuda:
        try:
            result["cuda"] = run_cuda(args)
        except Exception as exc:
            result["cuda"] = {"error": f"{type(exc).__name__}: {exc}",
                              "traceback": traceback.format_exc()[-3000:]}
    try:
        result["tpu"] = run_tpu(args)
        result["status"] = "ok"
    except Exception as exc:
        result["status"] = "failed"
        result["tpu"] = {"error": f"{type(exc).__name__}: {exc}",
                         "traceback": traceback.format_exc()[-3000:]}
    cuda, tpu = result.get("cuda", {}), result.get("tpu", {})
    if cuda.get("output_tok_s") and tpu.get("output_tok_s"):
        result["tpu_over_cuda_tok_s"] = round(tpu["output_tok_s"] / cuda["output_tok_s"], 3)
    write(out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
