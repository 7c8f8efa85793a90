"""``anyware bench``: offline throughput and latency for a model directory, preset or the demo
model."""

from __future__ import annotations

import argparse
import json
import sys

from anyware.cli.options import (
    add_engine_options,
    add_model_options,
    add_parser,
    check_preset,
    engine_kwargs,
    run_if_follower_rank,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = add_parser(
        sub, "bench", help="offline throughput/latency benchmark",
        description=(
            "Submit --num-prompts random-token prompts at once and time every token. Prints a "
            "progress bar and a summary table (requests/s, output tok/s, TTFT and inter-token "
            "latency percentiles); --json PATH also writes the result as JSON. Defaults to the "
            "built-in demo model; a preset (e.g. llama-3.1-8b) needs --load-format dummy."),
    )
    add_model_options(p)
    p.add_argument("--num-prompts", type=int, default=32, help="requests to submit")
    p.add_argument("--input-len", type=int, default=128, help="prompt tokens per request")
    p.add_argument("--output-len", type=int, default=64,
                   help="generated tokens per request (ignore_eos)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 is greedy")
    p.add_argument("--shared-prefix-len", type=int, default=0,
                   help="tokens shared by the prompts of a group (prefix-cache workload)")
    p.add_argument("--group-size", type=int, default=1,
                   help="prompts per shared-prefix group")
    add_engine_options(p)
    p.add_argument("--json", default=None, metavar="PATH",
                   help="also write the result as JSON to PATH ('-': standard output)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_preset(args)
    code = run_if_follower_rank(args)  # torchrun: ranks > 0 follow rank 0's benchmark
    if code is not None:
        return code
    from anyware.bench import Workload, run_offline, summary_table
    from anyware.engine.engine import Engine

    engine = Engine(**engine_kwargs(args), show_progress=not args.no_progress)
    try:
        wl = Workload(args.num_prompts, args.input_len, args.output_len, args.temperature,
                      shared_prefix_len=args.shared_prefix_len, group_size=args.group_size)
        res = run_offline(engine, wl, progress=not args.no_progress)
        summary = {"model": args.model, "platform": engine.core.platform.name,
                   "device": engine.core.platform.device_name(), **res.summary()}
    finally:
        engine.shutdown()
    if args.json == "-":
        print(json.dumps(summary, indent=2))
        return 0
    print(summary_table(summary))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
        print(f"result written to {args.json}", file=sys.stderr)
    return 0
