"""The ``anyware`` command. Each subcommand lives in its own module ``anyware.cli.<name>``
exposing ``register(subparsers)``; modules import heavy dependencies only when they run."""

from __future__ import annotations

import argparse
import importlib
import sys

from anyware.version import __version__

SUBCOMMANDS = ("platforms", "generate", "serve", "bench", "conformance", "plugin_new")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anyware", description="One LLM serving engine, any hardware.", allow_abbrev=False
    )
    parser.add_argument("--version", action="version", version=f"anyware {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"anyware.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"anyware.cli.{name}":
                raise
            continue
        module.register(sub)
    for subparser in sub.choices.values():  # no silent prefix matches, in any subcommand
        subparser.allow_abbrev = False
    return parser


def _subparser(parser: argparse.ArgumentParser, command: str | None) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command]
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # name the subcommand's usage, not the top-level one
        _subparser(parser, getattr(args, "command", None)).error(
            f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from anyware.cli.options import ExpertParallelSizeError, PresetNeedsDummyError
    from anyware.plugin.errors import AnywareError

    try:
        return int(args.func(args) or 0)
    except (AnywareError, PresetNeedsDummyError, ExpertParallelSizeError) as exc:
        print(f"anyware: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
