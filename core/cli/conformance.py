"""``anyware conformance``: run the conformance suite against a platform plugin and write the
reports (JUnit XML, JSON, Markdown, a one-line summary and a badge). Exit status 0 only when
every required test passed (100% of the claimed capabilities); 1 below that; 2 when the suite
could not run."""

from __future__ import annotations

import argparse
import json
import os
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "conformance",
        help="run the conformance suite against a platform plugin",
        description=(
            "Run the anyware conformance suite (pytest plugin anyware_conformance) against "
            "the named platform plugin. Tests outside the platform's declared capabilities "
            "are not applicable; every claimed capability must pass."
        ),
    )
    parser.add_argument("--platform", required=True, metavar="NAME", help="platform plugin name")
    parser.add_argument("--profile", choices=("core", "full"), default="core",
                        help="core: representative cases (default); full: every combination")
    parser.add_argument("--report", metavar="DIR", default=None,
                        help="write junit.xml, conformance.json (schema: "
                             "docs/conformance-schema.json), conformance.md, summary.txt and "
                             "badge.json into DIR")
    parser.add_argument("-n", "--workers", metavar="N", default=None,
                        help="run in N pytest-xdist workers ('auto' for one per core; needs "
                             "pytest-xdist: pip install pytest-xdist)")
    parser.add_argument("--tiers", metavar="LIST", default=None,
                        help="comma-separated tiers (default: all)")
    parser.add_argument("--attention-backend", metavar="NAME", default=None,
                        help="test this attention backend (the platform's own or one an "
                             "extension plugin contributes) instead of the default one")
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER,
                        help="extra pytest arguments after '--' (e.g. -- -k attention -x)")
    parser.set_defaults(func=run)


def pytest_argv(args: argparse.Namespace) -> list[str]:
    argv = ["--pyargs", "anyware_conformance.tests", "-p", "no:cacheprovider", "-q",
            "-o", "addopts=", "-o", "testpaths=", "-o", "python_files=test_*.py",
            "--anyware-platform", args.platform, "--anyware-profile", args.profile, "-rfEs"]
    if args.report:
        argv += ["--anyware-report", args.report,
                 f"--junitxml={os.path.join(args.report, 'junit.xml')}"]
    if args.tiers:
        argv += ["--anyware-tiers", args.tiers]
    if getattr(args, "attention_backend", None):
        argv += ["--anyware-attention-backend", args.attention_backend]
    if args.workers and args.workers not in ("0", "1"):
        argv += ["-n", str(args.workers)]
    extra = list(args.pytest_args or [])
    return argv + (extra[1:] if extra[:1] == ["--"] else extra)


def _xdist_missing(args: argparse.Namespace) -> bool:
    import importlib.util

    return bool(args.workers and args.workers not in ("0", "1")
                and importlib.util.find_spec("xdist") is None)


def _unknown_backend(platform: str, backend: str) -> str | None:
    """Why ``--attention-backend backend`` cannot be tested on ``platform`` (None if it can)."""
    from anyware.runtime import load_platform

    try:
        names = [b.name for b in load_platform(platform).attention_backends()]
    except Exception:  # the suite reports a platform that does not load, with the reason
        return None
    if backend in names:
        return None
    return (f"platform {platform!r} has no attention backend {backend!r} (known: "
            f"{', '.join(names) or 'none'}); an extension plugin contributing it may not be "
            "installed")


def run(args: argparse.Namespace) -> int:
    import tempfile

    import pytest

    if getattr(args, "attention_backend", None):
        problem = _unknown_backend(args.platform, args.attention_backend)
        if problem:
            print(f"anyware: error: {problem}", file=sys.stderr)
            return 2
    if _xdist_missing(args):
        print(f"anyware: error: -n {args.workers} runs the suite in pytest-xdist workers, and "
              "pytest-xdist is not installed — pip install pytest-xdist (or drop -n)",
              file=sys.stderr)
        return 2

    scratch = None
    if not args.report:  # the verdict is read from the JSON report: write it somewhere
        scratch = tempfile.TemporaryDirectory(prefix="anyware-conformance-")
        args.report = scratch.name
    os.makedirs(args.report, exist_ok=True)
    try:
        rc = int(pytest.main(pytest_argv(args)))
        path = os.path.join(args.report, "conformance.json")
        if not os.path.exists(path):
            print(f"anyware: error: the suite wrote no report (pytest exit {rc})", file=sys.stderr)
            return 2
        with open(path) as f:
            summary = json.load(f)["summary"]
        if scratch is None:
            print(f"reports: {os.path.join(args.report, 'conformance.md')}, conformance.json, "
                  "junit.xml, summary.txt, badge.json")
        if "line" in summary:
            print(summary["line"])
        return 0 if summary["conformant"] and rc in (0, 5) else 1
    finally:
        if scratch is not None:
            scratch.cleanup()
