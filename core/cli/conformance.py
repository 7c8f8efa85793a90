"""``anyware conformance``: run the conformance suite against a platform plugin and write the
reports (JUnit XML, JSON, Markdown). Exit status 0 only when every required test passed."""

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
                        help="write junit.xml, conformance.json and conformance.md into DIR")
    parser.add_argument("-n", "--workers", metavar="N", default=None,
                        help="run in N pytest-xdist workers ('auto' for one per core)")
    parser.add_argument("--tiers", metavar="LIST", default=None,
                        help="comma-separated tiers (default: all)")
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
    if args.workers and args.workers not in ("0", "1"):
        argv += ["-n", str(args.workers)]
    extra = list(args.pytest_args or [])
    return argv + (extra[1:] if extra[:1] == ["--"] else extra)


def run(args: argparse.Namespace) -> int:
    import tempfile

    import pytest

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
                  "junit.xml")
        return 0 if summary["conformant"] and rc in (0, 5) else 1
    finally:
        if scratch is not None:
            scratch.cleanup()
