"""Run a standard workload (PERFORMANCE.md) on our engine, optionally beside transformers.

    python benchmarks/run.py W1 [--peer] [--out DIR] [--platform cuda]

Workloads: W1 decode-bs1, W2 offline, W2S (W2 on a slice the peer finishes), W3 prefill,
W4 shared prefix (radix cache on vs off), W4Z (0% hits: cache on vs off), W6 small model,
CPU (qwen2.5-0.5b shape, fp32, 32 x 128/64).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from anyware import Engine, SamplingParams
from anyware.bench import Workload, run_offline
from anyware.cli.options import platform_option
from anyware.model.config import PRESETS
from env_info import env_info
from peers import hf_transformers as hf


def hf_config(preset: str) -> dict:
    c = PRESETS[preset]
    model_type = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2",
                  "Qwen3ForCausalLM": "qwen3"}[c.architecture]
    d = dict(model_type=model_type, hidden_size=c.hidden_size, num_hidden_layers=c.num_layers,
             num_attention_heads=c.num_heads, num_key_value_heads=c.num_kv_heads,
             head_dim=c.head_dim, intermediate_size=c.intermediate_size, vocab_size=c.vocab_size,
             rms_norm_eps=c.rms_norm_eps, rope_theta=c.rope_theta, tie_word_embeddings=c.tie_word_embeddings,
             max_position_embeddings=8192)
    if c.rope_scaling:
        d["rope_scaling"] = c.rope_scaling
    return d


class StepTimer:
    """Wraps the execution strategy to measure how much of the wall time the device has work
    queued (CUDA events around each forward): 1 - busy/wall is the scheduler's idle share.
    Each forward is also counted by mode (decode, extend, mixed, verify) with its host time
    inside the strategy's ``run`` (launches or a graph replay) and its events' device span."""

    def __init__(self, engine: Engine) -> None:
        self.strategy = engine.core.worker.strategy
        self.inner = self.strategy.run
        self.events: list[tuple] = []
        self.strategy.run = self._run

    def _run(self, batch):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        replays = self._replays()
        t0 = time.perf_counter()
        start.record()
        out = self.inner(batch)
        end.record()
        host = time.perf_counter() - t0
        graph = self._replays() != replays
        mode = getattr(batch.mode, "name", str(batch.mode)).lower()
        self.events.append((start, end, mode, graph, host, int(batch.input_ids.shape[0])))
        return out

    def _replays(self) -> int:
        return sum(getattr(self.strategy, k, 0) or 0
                   for k in ("replays", "prefill_replays", "verify_replays"))

    def busy_ms(self) -> float:
        torch.cuda.synchronize()
        return sum(e[0].elapsed_time(e[1]) for e in self.events)

    def breakdown(self) -> dict:
        """Per (mode, graph or eager): forwards, tokens, host ms in ``run`` and device ms
        between the events (totals over the run)."""
        torch.cuda.synchronize()
        out: dict = {}
        for start, end, mode, graph, host, tokens in self.events:
            row = out.setdefault(f"{mode}-{'graph' if graph else 'eager'}",
                                 {"forwards": 0, "tokens": 0, "host_ms": 0.0, "device_ms": 0.0})
            row["forwards"] += 1
            row["tokens"] += tokens
            row["host_ms"] += host * 1e3
            row["device_ms"] += start.elapsed_time(end)
        return {k: {**v, "host_ms": round(v["host_ms"], 1), "device_ms": round(v["device_ms"], 1)}
                for k, v in out.items()}


ENGINE_OPTS: dict = {}  # from --engine-opt, applied to every engine this run builds
BACKEND_ATTRS: dict = {}  # from --backend-attr, set on each engine's attention backend (A/B)


def parse_opt(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    for conv in (int, float):
        try:
            return key, conv(value)
        except ValueError:
            pass
    return key, {"true": True, "false": False}.get(value.lower(), value)


def engine_for(preset: str, platform: str | None, **kw) -> Engine:
    opts = dict(load_format="dummy", platform=platform, context_len=8192, show_progress=False)
    opts.update(kw)
    opts.update(ENGINE_OPTS)
    engine = Engine(preset, **opts)
    for key, value in BACKEND_ATTRS.items():
        if not hasattr(engine.core.worker.attention, key):
            raise SystemExit(f"the attention backend has no attribute {key!r}")
        setattr(engine.core.worker.attention, key, value)
    return engine


def free(engine: Engine | None) -> None:
    """Shut ``engine`` down and return device memory. The caller must drop its own reference
    (``e = None``) before building the next engine, or the old one stays alive."""
    if engine is not None:
        engine.shutdown()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def w1(args) -> dict:
    e = engine_for("llama-3.1-8b", args.platform, dtype="bfloat16", max_running_requests=8)
    wl = Workload(1, 128, 256)
    runs = [run_offline(e, wl).summary() for _ in range(3)]
    best = min(runs, key=lambda r: r["itl_ms_median"])
    res = {"ours": {**best, "ms_per_step": best["itl_ms_median"],
                    "tok_s": round(1000 / best["itl_ms_median"], 2), "all_runs": runs}}
    prompt = wl.prompts(e.model_config.vocab_size)[0]
    free(e)
    e = None
    if args.peer:
        model = hf.dummy_model(hf_config("llama-3.1-8b"), torch.bfloat16, "cuda")
        res["transformers_static_cache"] = hf.generate_static(model, prompt, 256, "cuda")
        del model
        free(None)
    return res


def w3(args) -> dict:
    e = engine_for("llama-3.1-8b", args.platform, dtype="bfloat16", chunked_prefill_size=8192,
                   max_running_requests=8, disable_radix_cache=True)
    cfg = e.model_config
    out = {}
    prompts = {}
    for n in (1024, 4096):
        prompt = prompts[n] = Workload(1, n, 1, seed=n).prompts(cfg.vocab_size)[0]
        p = SamplingParams(max_new_tokens=1, temperature=0)
        e.generate([prompt], p)  # warm-up (Triton compiles for this shape)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            e.generate([prompt], p)
            times.append(time.perf_counter() - t0)
        ttft = statistics.median(times)
        flops = 2 * cfg.param_count() * n + 2 * cfg.num_layers * cfg.num_heads * cfg.head_dim * n * n
        out[f"ttft_{n}_ms"] = round(ttft * 1e3, 2)
        out[f"tflops_{n}"] = round(flops / ttft / 1e12, 1)
    strat = e.core.worker.strategy
    out["prefill_graph_replays"] = getattr(strat, "prefill_replays", None)
    out["prefill_graph_buckets"] = list(getattr(strat, "_prefill", {}))
    free(e)
    e = None
    res = {"ours": out}
    if args.peer:
        free(None)
        model = hf.dummy_model(hf_config("llama-3.1-8b"), torch.bfloat16, "cuda")
        res["transformers_generate"] = {n: hf.time_to_first_token(model, p, "cuda")
                                        for n, p in prompts.items()}
        del model
        free(None)
    return res


def offline(args, preset: str, wl: Workload, dtype: str, peer_slice: int | None, **kw) -> dict:
    e = engine_for(preset, args.platform, dtype=dtype, **kw)
    timer = StepTimer(e) if torch.cuda.is_available() else None
    r = run_offline(e, wl)
    res = {"ours": r.summary()}
    st = e.stats()  # was the running-request cap or the KV capacity the limit?
    res["ours"]["retractions"] = st.retractions
    res["ours"]["kv_capacity_tokens"] = st.kv_pages_total * e.core.worker.page_size
    res["ours"]["max_running_requests"] = e.core.max_running_requests
    if timer is not None:
        busy = timer.busy_ms()
        res["ours"]["device_busy_fraction"] = round(busy / (r.wall_s * 1e3), 4)
        res["ours"]["forwards"] = len(timer.events)
        res["ours"]["graph_replays"] = getattr(e.core.worker.strategy, "replays", None)
        res["ours"]["forwards_by_mode"] = timer.breakdown()
    free(e)
    e = timer = None
    free(None)
    if args.peer and peer_slice:
        sl = Workload(peer_slice, wl.input_len, wl.output_len)
        if peer_slice == wl.num_prompts:
            res["ours_on_peer_slice"] = res["ours"]
        else:
            e = engine_for(preset, args.platform, dtype=dtype, **kw)
            res["ours_on_peer_slice"] = run_offline(e, sl).summary()
            free(e)
            e = None
            free(None)
        dev = "cuda" if torch.cuda.is_available() else "cpu"
        model = hf.dummy_model(hf_config(preset), getattr(torch, dtype), dev)
        prompts = sl.prompts(PRESETS[preset].vocab_size)
        if dev == "cuda":
            res["transformers_generate_batch"] = hf.generate_batch(model, prompts, wl.output_len, dev)
        else:
            res["transformers_generate"] = hf.generate_padded(model, prompts, wl.output_len, dev, 8)
        del model
        free(None)
    return res


def w4(args, zero_hits: bool) -> dict:
    groups, size = (args.w4_groups, 16)
    wl = Workload(groups * size, 128, 256, shared_prefix_len=0 if zero_hits else 2048,
                  group_size=size)
    if zero_hits:
        wl = Workload(groups * size, 2176, 256)
    out = {}
    for name, disable in (("cache_on", False), ("cache_off", True)):
        e = engine_for("llama-3.1-8b", args.platform, dtype="bfloat16", disable_radix_cache=disable)
        out[name] = run_offline(e, wl).summary()
        free(e)
        e = None  # drop the last reference before the next engine is built
        free(None)
    out["speedup_output_tok_s"] = round(out["cache_on"]["output_tok_s"] / out["cache_off"]["output_tok_s"], 3)
    return {"ours": out}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("workload", choices=["W1", "W2", "W2S", "W3", "W4", "W4Z", "W6", "CPU"])
    ap.add_argument("--peer", action="store_true", help="also run transformers in this process")
    ap.add_argument("--platform", default=None)
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--w2-prompts", type=int, default=1000)
    ap.add_argument("--w4-groups", type=int, default=64)
    ap.add_argument("--cpu-prompts", type=int, default=32)
    ap.add_argument("--tag", default="")
    ap.add_argument("--engine-opt", action="append", default=[], metavar="KEY=VALUE",
                    help="engine option for every engine built (e.g. attention_backend=triton)")
    ap.add_argument("--backend-attr", action="append", default=[], metavar="KEY=VALUE",
                    help="set an attribute of the attention backend (e.g. split_mixed=false)")
    ap.add_argument("--platform-opt", action="append", default=[], metavar="KEY=VALUE",
                    help="platform option (e.g. cuda_graph_max_prefill_tokens=0)")
    args = ap.parse_args()
    ENGINE_OPTS.update(parse_opt(o) for o in args.engine_opt)
    if args.platform_opt:
        ENGINE_OPTS["platform_options"] = dict(platform_option(o) for o in args.platform_opt)
    BACKEND_ATTRS.update(parse_opt(o) for o in args.backend_attr)
    info = env_info()
    t0 = time.perf_counter()
    if args.workload == "W1":
        res = w1(args)
    elif args.workload == "W3":
        res = w3(args)
    elif args.workload == "W2":
        res = offline(args, "llama-3.1-8b", Workload(args.w2_prompts, 1024, 1024), "bfloat16", None)
    elif args.workload == "W2S":
        res = offline(args, "llama-3.1-8b", Workload(64, 512, 256), "bfloat16", 64)
    elif args.workload == "W4":
        res = w4(args, zero_hits=False)
    elif args.workload == "W4Z":
        res = w4(args, zero_hits=True)
    elif args.workload == "W6":
        res = offline(args, "qwen2.5-0.5b", Workload(1000, 512, 256), "bfloat16", None)
    else:
        args.platform = args.platform or "cpu"
        res = offline(args, "qwen2.5-0.5b", Workload(args.cpu_prompts, 128, 64), "float32",
                      args.cpu_prompts, max_running_requests=64)
    result = {"workload": args.workload, "env": info, "engine_opts": ENGINE_OPTS, "backend_attrs": BACKEND_ATTRS, "elapsed_s": round(time.perf_counter() - t0, 1),
              **res}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"{args.workload}{'-' + args.tag if args.tag else ''}.json"
    (out / name).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
