"""``anyware platforms``: every discovered platform plugin, why it is (un)available, and which
one would be selected (rule 5: selection is explicit and explained)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "platforms",
        help="list discovered platform plugins and the one that would be selected",
        description=(
            "List every platform plugin found through the 'anyware.platforms' entry-point "
            "group, whether it is available (and why not), its priority and capabilities, "
            "and which one would be selected."
        ),
    )
    parser.add_argument(
        "--platform",
        default=None,
        metavar="NAME",
        help="select this platform (overrides $ANYWARE_PLATFORM)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)


def _capabilities(info: Any) -> dict[str, Any] | None:
    """Structured capabilities of an available platform (``None`` if unavailable or broken)."""
    if not info.available:
        return None
    try:
        caps = info.capabilities()
    except Exception:
        return None
    return caps.to_dict() if caps is not None else None


def _selection(infos: list[Any], explicit: str | None) -> tuple[Any, str, str | None]:
    """(selected info or None, how it was chosen, error message or None)."""
    from anyware.plugin import PlatformSelectionError
    from anyware.runtime import ENV_VAR, choose

    env = os.environ.get(ENV_VAR) or None
    if explicit:
        source = "--platform"
    elif env:
        source = f"${ENV_VAR}"
    else:
        source = "highest priority available"
    try:
        return choose(infos, explicit), source, None
    except PlatformSelectionError as exc:
        return None, source, str(exc)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for r in rows:
        cells = [c.ljust(w) for c, w in zip(r[:-1], widths[:-1])] + [r[-1]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from anyware.plugin import PLUGIN_API_VERSION
    from anyware.runtime import ENV_VAR, discover
    from anyware.version import __version__

    infos = discover()
    selected, source, error = _selection(infos, args.platform)

    if args.json:
        doc = {
            "anyware_version": __version__,
            "plugin_api_version": PLUGIN_API_VERSION,
            "platforms": [
                {
                    "name": i.name,
                    "package": i.package,
                    "version": i.version,
                    "entry_point": i.entry_point,
                    "available": i.available,
                    "reason": i.probe.reason,
                    "explicit_only": i.probe.explicit_only,
                    "priority": i.priority,
                    "capability_summary": i.capability_summary(),
                    "capabilities": _capabilities(i),
                    "selected": selected is not None and i.name == selected.name,
                }
                for i in infos
            ],
            "selected": selected.name if selected is not None else None,
            "selected_by": source if selected is not None else None,
            "error": error,
        }
        print(json.dumps(doc, indent=2))
        return 0 if error is None else 1

    print(f"anyware {__version__} (plugin API {PLUGIN_API_VERSION})")
    if not infos:
        print("no platform plugins discovered (entry-point group 'anyware.platforms')")
    else:
        rows = [["", "NAME", "PACKAGE", "PRIORITY", "STATUS", "CAPABILITIES / REASON"]]
        for i in infos:
            mark = "*" if selected is not None and i.name == selected.name else ""
            status = "unavailable"
            if i.available:
                status = "by name only" if i.probe.explicit_only else "available"
            detail = i.capability_summary() if i.available else i.probe.reason
            if i.available and i.probe.reason:
                detail = f"{detail} ({i.probe.reason})"
            rows.append([mark, i.name, f"{i.package} {i.version}", str(i.priority), status, detail])
        print(_table(rows))
    print(
        "Other platforms install as plugins (pip install anyware[<platform>] or a vendor's "
        f"package); choose one with --platform NAME or ${ENV_VAR}."
    )
    if error is not None:
        print(f"anyware: error: {error}", file=sys.stderr)
        return 1
    print(f"selected: {selected.name} ({source})")
    return 0
