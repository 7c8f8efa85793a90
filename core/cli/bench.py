"""``anyware bench``: offline throughput and latency for a model directory, preset or the demo
model; ``anyware bench serve``: the online benchmark against a running server."""

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
    modes = p.add_subparsers(dest="bench_mode", metavar="MODE",
                             title="modes (default: the offline benchmark above)")
    _register_serve(modes)


def _register_serve(modes: argparse._SubParsersAction) -> None:
    from anyware.cli.options import Formatter

    p = modes.add_parser(
        "serve", allow_abbrev=False, formatter_class=Formatter,
        help="online benchmark: drive a running server over HTTP",
        description=(
            "Send --num-prompts streaming requests to a running server (anyware serve, or any "
            "server with SGLang's /generate or an OpenAI /v1/completions taking token ids) at "
            "--request-rate (Poisson; inf: all at once), at most --max-concurrency in flight, "
            "and report requests/s, output tok/s and TTFT / TPOT / ITL / end-to-end latency "
            "percentiles. Prompts are token ids: random lengths, or a local ShareGPT JSON "
            "file's (--dataset sharegpt --dataset-path FILE)."),
    )
    g = p.add_argument_group("server")
    g.add_argument("--base-url", default="http://127.0.0.1:30000", help="the server")
    g.add_argument("--api-key", default=None, metavar="KEY", help="sent as a bearer token")
    g.add_argument("--model", default=None,
                   help="model name for /v1/completions (default: the server's)")
    g.add_argument("--endpoint", default="generate", choices=("generate", "completions"),
                   help="'generate': /generate (each chunk's token ids, every token timed); "
                        "'completions': /v1/completions (ITL per chunk)")
    w = p.add_argument_group("workload")
    w.add_argument("--num-prompts", type=int, default=100, help="requests to send")
    w.add_argument("--dataset", default="random", choices=("random", "sharegpt"),
                   help="where lengths come from")
    w.add_argument("--dataset-path", default=None, metavar="FILE",
                   help="ShareGPT-format JSON file (local; nothing is downloaded)")
    w.add_argument("--input-len", "--random-input-len", dest="input_len", type=int, default=256,
                   help="random dataset: prompt tokens (upper bound)")
    w.add_argument("--output-len", "--random-output-len", dest="output_len", type=int,
                   default=128, help="random dataset: output tokens (upper bound; ignore_eos)")
    w.add_argument("--range-ratio", "--random-range-ratio", dest="range_ratio", type=float,
                   default=1.0, help="random lengths are uniform in [ratio * len, len]")
    w.add_argument("--request-rate", type=float, default=float("inf"),
                   help="requests per second (Poisson arrivals); inf sends all at once")
    w.add_argument("--max-concurrency", type=int, default=None,
                   help="most requests in flight (default: no limit)")
    w.add_argument("--temperature", type=float, default=0.0, help="0 is greedy")
    w.add_argument("--seed", type=int, default=0, help="workload random seed")
    o = p.add_argument_group("output")
    o.add_argument("--json", default=None, metavar="PATH",
                   help="also write the result as JSON to PATH ('-': standard output)")
    o.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    o.add_argument("--no-warmup", action="store_true",
                   help="skip the untimed warm-up request")
    p.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    import asyncio

    from anyware.bench.online import ServeWorkload, run_serve_bench, serve_summary_table

    wl = ServeWorkload(
        num_prompts=args.num_prompts, input_len=args.input_len, output_len=args.output_len,
        range_ratio=args.range_ratio, dataset=args.dataset, dataset_path=args.dataset_path,
        request_rate=args.request_rate, max_concurrency=args.max_concurrency,
        endpoint=args.endpoint, temperature=args.temperature, seed=args.seed)
    try:
        summary = asyncio.run(run_serve_bench(
            args.base_url, wl, api_key=args.api_key, model=args.model,
            warmup=not args.no_warmup, progress=not args.no_progress and args.json != "-"))
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"anyware: error: {exc}", file=sys.stderr)
        return 1
    return _emit(summary, args.json, serve_summary_table)


def _emit(summary: dict, json_path: str | None, table) -> int:
    if json_path == "-":
        print(json.dumps(summary, indent=2))
        return 0
    print(table(summary))
    if json_path:
        with open(json_path, "w") as f:
            json.dump(summary, f, indent=2)
        print(f"result written to {json_path}", file=sys.stderr)
    return 1 if summary.get("failed") else 0


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
        cfg = engine.config
        summary = {"model": args.model, "platform": engine.info.platform,
                   "device": engine.info.device_name,
                   "precision": {"dtype": str(cfg.dtype or "auto"),
                                 "kv_cache_dtype": str(cfg.kv_cache_dtype or "auto"),
                                 "quantization": cfg.quantization},
                   **res.summary()}
    finally:
        engine.shutdown()
    return _emit(summary, args.json, summary_table)
