"""``anyware serve``: the OpenAI-compatible HTTP server around one engine (the engine in a
process of its own unless ``--engine-in-process``)."""

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
DEFAULT_SHUTDOWN_TIMEOUT_S = 30.0  # anyware.server.launch.GRACEFUL_SHUTDOWN_S (a test checks)
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


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
            "machine with nothing to download. The scheduler and the model run in a process "
            "of their own; tokenization, detokenization and HTTP stay in this one."
        ),
    )
    model = parser.add_argument_group("model")
    add_model_options(model)
    model.add_argument("--tokenizer", default=None, metavar="PATH",
                       help="tokenizer directory (default: the model directory's)")
    model.add_argument("--chat-template", default=None, metavar="FILE|TEMPLATE",
                       help="Jinja chat template for /v1/chat/completions: a file, or the "
                            "template itself (default: the tokenizer's)")
    http = parser.add_argument_group("HTTP server")
    http.add_argument("--served-model-name", default=None, metavar="NAME",
                      help=f"model name clients must send (default: the --model value, or "
                           f"'{DEMO_MODEL}')")
    http.add_argument("--host", default="127.0.0.1", help="address to bind")
    http.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to bind")
    http.add_argument("--api-key", default=None, metavar="KEY",
                      help="require 'Authorization: Bearer KEY' on every route except "
                           "/health, /health_generate, /metrics, /ping and /version")
    http.add_argument("--shutdown-timeout", type=float, default=DEFAULT_SHUTDOWN_TIMEOUT_S,
                      metavar="SECONDS",
                      help="on SIGTERM/SIGINT: stop accepting requests (503) and give those in "
                           "flight this long to finish before they are cancelled")
    proc = parser.add_argument_group("process model (docs/server.md)")
    proc.add_argument("--engine-in-process", action="store_true",
                      help="run the scheduler and the model in a thread of the server process "
                           "instead of a process of their own (for debugging: one process to "
                           "attach to; slower under load)")
    add_engine_options(parser, group=parser.add_argument_group("engine capacity and execution"))
    logs = parser.add_argument_group("logging")
    logs.add_argument("--log-level", default="info", choices=LOG_LEVELS,
                      help="server and engine logging")
    logs.add_argument("--uvicorn-log-level", default=None, choices=LOG_LEVELS,
                      help="uvicorn's own logging (default: --log-level)")
    logs.add_argument("--disable-access-log", action="store_true",
                      help="do not log one line per HTTP request")
    logs.add_argument("--disable-log-requests", action="store_true",
                      help="do not log one line per generation request (id, prompt length, "
                           "sampling settings)")
    logs.add_argument("--log-stats-interval", type=float, default=DEFAULT_LOG_STATS_INTERVAL_S,
                      metavar="SECONDS",
                      help="log engine statistics (running, queued, KV usage, tok/s) this "
                           "often while busy; 0 turns it off")
    parser.set_defaults(func=run)


def _chat_template(value: str) -> str:
    path = Path(value).expanduser()
    if path.is_file():
        return path.read_text()
    if "{" not in value:  # neither a file nor a template: most likely a mistyped path
        raise FileNotFoundError(f"--chat-template {value!r}: no such file (pass a Jinja "
                                "template file, or the template text itself)")
    return value


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    check_preset(args)
    code = run_if_follower_rank(args)  # under torchrun / --node-rank: ranks > 0 serve no HTTP
    if code is not None:
        return code
    template = None
    if args.chat_template is not None:
        try:
            template = _chat_template(args.chat_template)
        except FileNotFoundError as exc:
            print(f"anyware: error: {exc}", file=sys.stderr)
            return 1
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
        engine = Engine(**engine_kwargs(args), engine_process=not args.engine_in_process)
        if template is not None:
            if engine.tokenizer is None:
                engine.shutdown()
                print("anyware: error: --chat-template needs a tokenizer, and this model has "
                      "none; pass --tokenizer PATH", file=sys.stderr)
                return 1
            engine.tokenizer.chat_template = template
    except BaseException:
        sock.close()
        raise
    print(f"anyware: serving '{name}' on http://{args.host}:{args.port}/v1", file=sys.stderr,
          flush=True)
    return serve(engine, name, host=args.host, port=args.port, api_key=args.api_key,
                 log_level=args.log_level, uvicorn_log_level=args.uvicorn_log_level,
                 access_log=not args.disable_access_log,
                 log_requests=not args.disable_log_requests,
                 log_stats_interval=args.log_stats_interval or None,
                 shutdown_timeout=args.shutdown_timeout, sock=sock,
                 launch={"log_level": args.log_level,
                         "engine_in_process": args.engine_in_process})
