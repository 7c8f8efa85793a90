"""``anyware serve``: the OpenAI-compatible HTTP server around one engine."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from anyware.cli.options import (
    DEMO_MODEL,
    add_engine_options,
    add_model_options,
    add_parser,
    check_preset,
    engine_kwargs,
    run_if_follower_rank,
)

DEFAULT_PORT = 30000
DEFAULT_LOG_STATS_INTERVAL_S = 10.0


def demo_model_path() -> Path:
    """The demo model shipped in the package (``anyware/assets/demo-llama``)."""
    import anyware

    return Path(anyware.__file__).parent / "assets" / "demo-llama"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_parser(
        subparsers,
        "serve",
        help="serve a model over an OpenAI-compatible HTTP API",
        description=(
            "Start an OpenAI-compatible server (/v1/completions, /v1/chat/completions, "
            "/v1/models, /generate, /tokenize, /health, /metrics, ...; docs/server.md lists "
            "them). Without --model it serves the built-in demo model, so it works on a fresh "
            "machine with nothing to download."
        ),
    )
    add_model_options(parser)
    parser.add_argument(
        "--served-model-name", default=None, metavar="NAME",
        help=f"model name clients must send (default: the --model value, or '{DEMO_MODEL}')",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to bind")
    parser.add_argument("--api-key", default=None, metavar="KEY",
                        help="require 'Authorization: Bearer KEY' on every route except "
                             "/health, /health_generate, /metrics, /ping and /version")
    add_engine_options(parser)
    parser.add_argument("--log-level", default="info",
                        choices=("critical", "error", "warning", "info", "debug"),
                        help="server and engine logging")
    parser.add_argument("--disable-access-log", action="store_true",
                        help="do not log one line per HTTP request")
    parser.add_argument("--log-stats-interval", type=float, default=DEFAULT_LOG_STATS_INTERVAL_S,
                        metavar="SECONDS",
                        help="log engine statistics (running, queued, KV usage, tok/s) this "
                             "often while busy; 0 turns it off")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    check_preset(args)
    code = run_if_follower_rank(args)  # under torchrun / --node-rank: ranks > 0 serve no HTTP
    if code is not None:
        return code
    from anyware.server.launch import PortInUseError, bind_socket

    try:  # before the model loads: a busy port fails now, not minutes later
        sock = bind_socket(args.host, args.port)
    except PortInUseError as exc:
        print(f"anyware: error: {exc}", file=sys.stderr)
        return 1
    try:
        from anyware import Engine
        from anyware.server.launch import serve

        if args.model == DEMO_MODEL and not demo_model_path().is_dir():
            print(f"anyware: error: the built-in demo model is missing ({demo_model_path()}); "
                  "pass --model PATH", file=sys.stderr)
            return 1
        name = args.served_model_name or args.model
        engine = Engine(**engine_kwargs(args))
    except BaseException:
        sock.close()
        raise
    print(f"anyware: serving '{name}' on http://{args.host}:{args.port}/v1", file=sys.stderr,
          flush=True)
    serve(engine, name, host=args.host, port=args.port, api_key=args.api_key,
          log_level=args.log_level, access_log=not args.disable_access_log,
          log_stats_interval=args.log_stats_interval or None, sock=sock,
          launch={"log_level": args.log_level})
    return 0
