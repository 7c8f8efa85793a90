"""The pytest plugin (entry point ``pytest11``): options, and nothing else until they are used.

This module loads in every pytest run of anyone who installs anyware, so it imports nothing
heavy. Only when ``--anyware-platform`` is given does it register the harness (fixtures,
applicability, per-test records) and the report writer; otherwise it makes pytest ignore the
suite's own test files, so other projects' runs are unaffected.
"""

from __future__ import annotations

import os

PROFILES = ("core", "full")
_SUITE_DIR = os.path.dirname(os.path.abspath(__file__))


def pytest_addoption(parser) -> None:
    group = parser.getgroup("anyware", "anyware conformance suite")
    group.addoption(
        "--anyware-platform",
        default=None,
        metavar="NAME",
        help="run the anyware conformance suite against this platform plugin",
    )
    group.addoption(
        "--anyware-profile",
        default="core",
        choices=PROFILES,
        help="core: one representative case per shape family; full: every combination",
    )
    group.addoption(
        "--anyware-report",
        default=None,
        metavar="DIR",
        help="write conformance.json, conformance.md and junit.xml into DIR",
    )
    group.addoption(
        "--anyware-attention-backend",
        default=None,
        metavar="NAME",
        help="test this attention backend of the platform (its own or one an extension "
        "contributes) instead of the default one; the capabilities are derived from it",
    )
    group.addoption(
        "--anyware-tiers",
        default=None,
        metavar="LIST",
        help="comma-separated tiers to run (default: all): ops,attention,moe,collectives,"
        "graphs,memory,engine",
    )


def _active(config) -> bool:
    return bool(config.getoption("--anyware-platform", default=None))


import pytest  # noqa: E402 - pytest is already imported by the time plugins load


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers",
        "anyware(tier, capability, since='0.1.0', provisional=False, needs=()): "
        "a conformance test; `needs` lists the capabilities it applies to",
    )
    if not _active(config):
        return
    report_dir = config.getoption("--anyware-report")
    if report_dir and not getattr(config.option, "xmlpath", None):
        os.makedirs(report_dir, exist_ok=True)
        config.option.xmlpath = os.path.join(report_dir, "junit.xml")
    from anyware_conformance.harness import Harness
    from anyware_conformance.reporting import ReportWriter

    config.pluginmanager.register(Harness(config), "anyware-conformance-harness")
    config.pluginmanager.register(ReportWriter(config), "anyware-conformance-report")


def pytest_ignore_collect(collection_path, config):
    """Never collect the suite's tests unless a platform was named."""
    if _active(config):
        return None
    if str(collection_path).startswith(_SUITE_DIR):
        return True
    return None
