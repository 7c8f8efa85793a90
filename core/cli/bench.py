"""``anyware bench``: offline throughput and latency for a model directory or preset."""

from __future__ import annotations

import argparse
import json

from anyware.cli.options import add_platform_option


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="offline throughput/latency benchmark")
    p.add_argument("--model", required=True, help="model directory or preset (e.g. llama-3.1-8b)")
    p.add_argument("--load-format", default="auto", choices=["auto", "safetensors", "dummy"])
    p.add_argument("--platform", default=None)
    p.add_argument("--dtype", default=None)
    p.add_argument("--num-prompts", type=int, default=32)
    p.add_argument("--input-len", type=int, default=128)
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--shared-prefix-len", type=int, default=0)
    p.add_argument("--group-size", type=int, default=1)
    p.add_argument("--page-size", type=int, default=None)
    p.add_argument("--max-running-requests", type=int, default=256)
    p.add_argument("--chunked-prefill-size", type=int, default=2048)
    p.add_argument("--disable-radix-cache", action="store_true")
    p.add_argument("--execution", default="auto")
    p.add_argument("--attention-backend", default=None)
    p.add_argument("--overlap-schedule", action=argparse.BooleanOptionalAction, default=None,
                   help="schedule step N+1 while step N runs (default: the platform's choice)")
    add_platform_option(p)
    p.add_argument("--mem-fraction", type=float, default=0.85)
    p.add_argument("--context-len", type=int, default=None)
    p.add_argument("--json", default=None, help="write the result as JSON to this path")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from anyware.bench import Workload, run_offline
    from anyware.engine.engine import Engine

    engine = Engine(
        args.model, platform=args.platform, dtype=args.dtype, load_format=args.load_format,
        page_size=args.page_size, max_running_requests=args.max_running_requests,
        chunked_prefill_size=args.chunked_prefill_size,
        disable_radix_cache=args.disable_radix_cache, execution=args.execution,
        attention_backend=args.attention_backend, mem_fraction=args.mem_fraction,
        context_len=args.context_len, overlap_schedule=args.overlap_schedule,
        platform_options=dict(args.platform_option),
    )
    try:
        wl = Workload(args.num_prompts, args.input_len, args.output_len, args.temperature,
                      shared_prefix_len=args.shared_prefix_len, group_size=args.group_size)
        res = run_offline(engine, wl)
        summary = {"model": args.model, "platform": engine.core.platform.name,
                   "device": engine.core.platform.device_name(), **res.summary()}
    finally:
        engine.shutdown()
    print(json.dumps(summary, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    return 0
