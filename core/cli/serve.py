"""``anyware serve``: the OpenAI-compatible HTTP server around one engine."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from anyware.cli.options import add_platform_option

DEFAULT_PORT = 30000


def demo_model_path() -> Path:
    """The demo model shipped in the package (``anyware/assets/demo-llama``)."""
    import anyware

    return Path(anyware.__file__).parent / "assets" / "demo-llama"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve a model over an OpenAI-compatible HTTP API",
        description=(
            "Start an OpenAI-compatible server (/v1/completions, /v1/chat/completions, "
            "/v1/models, /generate, /health, /metrics). Without --model it serves the built-in "
            "demo model, so it works on a fresh machine with nothing to download."
        ),
    )
    parser.add_argument(
        "--model", default=None, metavar="PATH|PRESET",
        help="Hugging Face model directory or preset name (default: the built-in demo model)",
    )
    parser.add_argument(
        "--served-model-name", default=None, metavar="NAME",
        help="model name clients must send (default: the --model value, or 'anyware-demo')",
    )
    parser.add_argument("--platform", default=None, metavar="NAME",
                        help="platform plugin to run on (overrides $ANYWARE_PLATFORM)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port to bind (default {DEFAULT_PORT})")
    parser.add_argument("--api-key", default=None, metavar="KEY",
                        help="require 'Authorization: Bearer KEY' on /v1/* and /generate")
    parser.add_argument("--dtype", default=None, help="model dtype (default: the platform's)")
    parser.add_argument("--load-format", default="auto", choices=("auto", "dummy"),
                        help="'dummy' uses random weights (default: auto)")
    parser.add_argument("--page-size", type=int, default=None, help="KV-cache page size")
    parser.add_argument("--max-running-requests", type=int, default=256,
                        help="most requests in the running batch (default 256)")
    parser.add_argument("--chunked-prefill-size", type=int, default=2048,
                        help="most prompt tokens prefilled per step (default 2048)")
    parser.add_argument("--context-len", type=int, default=None,
                        help="cap on prompt + completion length (default: the model's)")
    parser.add_argument("--mem-fraction", type=float, default=0.85,
                        help="fraction of device memory for weights + KV cache (default 0.85)")
    parser.add_argument("--disable-radix-cache", action="store_true",
                        help="turn off prefix caching")
    parser.add_argument("--attention-backend", default=None, metavar="NAME",
                        help="attention backend by name (default: the platform's best)")
    parser.add_argument("--execution", default="auto", choices=("auto", "eager", "graphs", "compiled"),
                        help="execution strategy (default: the platform's)")
    parser.add_argument("--overlap-schedule", action=argparse.BooleanOptionalAction, default=None,
                        help="schedule step N+1 while step N runs (default: on where the device "
                             "runs asynchronously)")
    add_platform_option(parser)
    parser.add_argument("--seed", type=int, default=0, help="engine random seed (default 0)")
    parser.add_argument("--log-level", default="info",
                        choices=("critical", "error", "warning", "info", "debug"))
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    from anyware import Engine
    from anyware.server.launch import serve

    model = args.model
    if model is None:
        path = demo_model_path()
        if not path.is_dir():
            print(f"anyware: error: the built-in demo model is missing ({path}); "
                  "pass --model PATH", file=sys.stderr)
            return 1
        model = str(path)
        name = args.served_model_name or "anyware-demo"
    else:
        name = args.served_model_name or args.model
    engine = Engine(
        model=model,
        platform=args.platform,
        dtype=args.dtype,
        load_format=args.load_format,
        page_size=args.page_size,
        max_running_requests=args.max_running_requests,
        chunked_prefill_size=args.chunked_prefill_size,
        context_len=args.context_len,
        platform_options=dict(args.platform_option),
        mem_fraction=args.mem_fraction,
        disable_radix_cache=args.disable_radix_cache,
        attention_backend=args.attention_backend,
        execution=args.execution,
        overlap_schedule=args.overlap_schedule,
        seed=args.seed,
    )
    print(f"anyware: serving '{name}' on http://{args.host}:{args.port}/v1", file=sys.stderr,
          flush=True)
    serve(engine, name, host=args.host, port=args.port, api_key=args.api_key,
          log_level=args.log_level)
    return 0
