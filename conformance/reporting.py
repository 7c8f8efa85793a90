"""The report writer: collects every test's outcome and ``user_properties`` (in the xdist
controller, or in the only process without xdist) and writes ``conformance.json``,
``conformance.md``, ``summary.txt`` (the one-line summary) and ``badge.json`` (a shields.io
endpoint) into ``--anyware-report DIR`` (pytest writes ``junit.xml`` beside them). Also prints
the verdict and the one-line summary at the end of the terminal summary.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
from anyware_conformance.harness import CHECK_KEY, META_KEY
from anyware_conformance.report_format import badge, build_report, render_markdown


class ReportWriter:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.tests: dict[str, dict[str, Any]] = {}
        self.platform_records: list[dict[str, Any]] = []
        self.started = time.time()
        self.report: dict[str, Any] | None = None

    @staticmethod
    def _is_worker(config) -> bool:
        return hasattr(config, "workerinput")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self._is_worker(self.config):
            return
        meta, checks = None, []
        for key, value in report.user_properties:
            if key == META_KEY:
                meta = json.loads(value)
            elif key == CHECK_KEY:
                checks.append(json.loads(value))
        if meta is None:
            return
        entry = self.tests.setdefault(report.nodeid, {"id": report.nodeid, **meta, "outcome": None})
        entry["checks"] = checks
        entry["duration_s"] = round(entry.get("duration_s", 0.0) + report.duration, 4)
        outcome = _outcome(report, meta)
        if outcome is None:
            return
        # the worst phase wins: a teardown error after a pass is an error
        rank = {None: 0, "passed": 1, "xfailed": 2, "skipped": 3, "not_applicable": 3,
                "failed": 4, "error": 5}
        if rank[outcome] >= rank[entry["outcome"]]:
            entry["outcome"] = outcome
            entry["message"] = _message(report)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error) -> None:
        out = getattr(node, "workeroutput", {}) or {}
        if "anyware_platform" in out:
            self.platform_records.append(json.loads(out["anyware_platform"]))

    def pytest_sessionfinish(self, session, exitstatus) -> None:
        if self._is_worker(session.config):
            return
        harness = session.config.pluginmanager.get_plugin("anyware-conformance-harness")
        record = self.platform_records[0] if self.platform_records else harness.platform_record()
        self.report = build_report(
            tests=list(self.tests.values()),
            platform=record,
            profile=harness.profile,
            tiers=list(harness.tiers),
            attention_backend=harness.attention_backend,
            waivers=[w.__dict__ for w in harness.metadata().waivers],
            known_failures=[k.__dict__ for k in harness.metadata().known_failures],
            world_sizes=sorted({t.get("world_size", 1) for t in self.tests.values()} | {1}),
            duration_s=time.time() - self.started,
        )
        out_dir = session.config.getoption("--anyware-report")
        if out_dir:
            os.makedirs(out_dir, exist_ok=True)
            with open(os.path.join(out_dir, "conformance.json"), "w") as f:
                json.dump(self.report, f, indent=1, sort_keys=False)
            with open(os.path.join(out_dir, "conformance.md"), "w") as f:
                f.write(render_markdown(self.report))
            with open(os.path.join(out_dir, "summary.txt"), "w") as f:
                f.write(self.report["summary"]["line"] + "\n")
            with open(os.path.join(out_dir, "badge.json"), "w") as f:
                json.dump(badge(self.report), f, indent=1, ensure_ascii=False)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.report is None:
            return
        s = self.report["summary"]
        terminalreporter.write_sep("=", "anyware conformance")
        terminalreporter.write_line(
            f"platform {self.report['platform']['name']}: verdict {s['verdict']} "
            f"({s['required_passed']}/{s['required']} required passed; "
            f"{s['not_applicable']} not applicable, {s['xfailed']} known failures, "
            f"{s['skipped']} skipped, {s['provisional']} provisional) -> "
            + ("CONFORMANT" if s["conformant"] else "NOT CONFORMANT")
        )
        terminalreporter.write_line(s["line"])


def _outcome(report: pytest.TestReport, meta: dict) -> str | None:
    if hasattr(report, "wasxfail"):
        return "xfailed" if report.skipped else "failed"  # strict XPASS is reported as failed
    if report.when == "call":
        return report.outcome
    if report.failed:
        return "error"
    if report.skipped:
        return "not_applicable" if meta.get("state") == "not_applicable" else "skipped"
    return None


def _message(report: pytest.TestReport) -> str:
    if report.passed:
        return ""
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2])
    if hasattr(report, "wasxfail"):
        return str(report.wasxfail)
    text = str(report.longrepr or "")
    return text[-2000:]
