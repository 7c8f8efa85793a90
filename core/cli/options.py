"""``--platform-option KEY=VALUE``: platform-specific settings from the command line."""

from __future__ import annotations

import argparse
import json


def _value(text: str):
    """JSON when it parses (numbers, true/false, lists), else the string itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def platform_option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), _value(value.strip())


def add_platform_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--platform-option", type=platform_option, action="append", default=[],
        metavar="KEY=VALUE",
        help="platform-specific setting, repeatable (e.g. cuda_graph_max_prefill_tokens=0; "
             "the platform's docs list its keys)")
