"""Running the conformance suite in a subprocess, optionally with the faulty plugin installed
through a generated ``.dist-info`` (entry point group ``anyware.platforms``) on PYTHONPATH."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"


def install_faulty_plugin(site: Path) -> Path:
    """Write an ``anyware-faulty`` distribution's metadata into ``site``; return ``site``."""
    info = site / "anyware_faulty-0.0.1.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: anyware-faulty\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text("[anyware.platforms]\nfaulty = faulty_plugin.plugin\n")
    return site


def suite_env(site: Path | None = None, **extra: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", **extra)
    env.pop("ANYWARE_PLATFORM", None)
    if site is not None:
        paths = [str(site), str(FIXTURES), env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


def start_suite(platform: str, report: Path, *, tiers: str | None = None, site: Path | None = None,
                fault: str | None = None, extra: tuple[str, ...] = ()) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-o", "addopts=",
           "--pyargs", "anyware_conformance.tests", "--anyware-platform", platform,
           "--anyware-report", str(report), *extra]
    if tiers:
        cmd += ["--anyware-tiers", tiers]
    env = suite_env(site, **({"ANYWARE_FAULT": fault} if fault else {}))
    return subprocess.Popen(cmd, env=env, cwd=str(report.parent), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def read_report(report: Path) -> dict:
    with open(report / "conformance.json") as f:
        return json.load(f)


def failing_ids(report: dict) -> list[str]:
    return [t["id"] for t in report["tests"] if t["outcome"] in ("failed", "error")]


def run_conformance(tmp_path: Path, platform: str, *args: str, min_required: int = 1) -> dict:
    """``anyware conformance --platform PLATFORM --report <tmp> ARGS`` in a subprocess; asserts
    it exited 0 with a conformant 100% verdict over more than ``min_required`` required tests
    and returns the JSON report."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "anyware.cli.main", "conformance", "--platform", platform,
           "--report", str(out), *args]
    proc = subprocess.run(cmd, env=suite_env(), cwd=tmp_path, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    report = json.loads((out / "conformance.json").read_text())
    s = report["summary"]
    assert s["conformant"] and s["verdict"] == "100.0%" and s["failed"] == s["error"] == 0
    assert s["required"] == s["required_passed"] > min_required
    return report
