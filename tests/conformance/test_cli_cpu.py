"""`anyware conformance --platform cpu` passes 100% (not-applicable excluded) and writes the
three reports; plus unit tests of the report format, the tolerance table and the chi-square."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import torch
from anyware_conformance.report_format import build_report, render_markdown
from anyware_conformance.stats import chi_square
from anyware_conformance.tolerances import tolerance

from tests.conformance.helpers import run_conformance


def test_cli_cpu_passes_and_writes_reports(tmp_path):
    report = run_conformance(tmp_path, "cpu", "-n", "2", "--tiers",
                             "ops,attention,moe,collectives,graphs,memory", min_required=100)
    assert report["schema_version"] and report["engine"]["version"]
    assert report["platform"]["name"] == "cpu" and report["platform"]["device_name"]
    assert report["platform"]["runtime_versions"]["torch"]
    tiers = {t["tier"] for t in report["tests"]}
    assert {"ops", "attention", "moe", "collectives", "graphs", "memory"} <= tiers
    # graphs: the CPU platform declares neither capture nor compilation -> not applicable
    assert all(t["outcome"] == "not_applicable" for t in report["tests"] if t["tier"] == "graphs")
    passed = [t for t in report["tests"] if t["outcome"] == "passed" and t["error"]]
    assert passed and all("max_abs" in t["error"] and "tolerance" in t["error"] for t in passed)
    out, s = tmp_path / "out", report["summary"]
    md = (out / "conformance.md").read_text()
    assert "Verdict: 100.0%" in md and "| attention.decode |" in md
    junit = ET.parse(out / "junit.xml").getroot()
    suite = junit if junit.tag == "testsuite" else junit.find("testsuite")
    assert int(suite.get("tests")) == s["total"] and int(suite.get("failures")) == 0


def _row(outcome, provisional=False, state="required"):
    return {"id": f"t::{outcome}{provisional}", "tier": "ops", "capability": "ops.x",
            "dtype": "float32", "since": "0.1.0", "provisional": provisional, "state": state,
            "reason": "", "outcome": outcome, "checks": []}


def test_verdict_counts_skips_and_excludes_not_applicable():
    rows = [_row("passed"), _row("skipped"), _row("not_applicable"), _row("failed", True)]
    r = build_report(tests=rows, platform={"name": "x"}, profile="core", tiers=["ops"],
                     waivers=[], known_failures=[], world_sizes=[1], duration_s=0.0)
    s = r["summary"]
    assert (s["required"], s["required_passed"], s["conformant"]) == (2, 1, False)
    assert s["verdict"] == "50.0%" and s["not_applicable"] == 1 and s["provisional"] == 1
    assert "passed / claimed / total" in render_markdown(r)


def test_tolerance_table_grows_with_reduction_and_precision():
    assert tolerance("attention", "bfloat16", 4096).atol > tolerance("attention", "bfloat16", 64).atol
    assert tolerance("rms_norm", "float32", 64).rtol < tolerance("rms_norm", "bfloat16", 64).rtol
    assert tolerance("store_kv", "bfloat16").atol == 0.0


def test_chi_square_accepts_the_truth_and_rejects_a_wrong_distribution():
    g = torch.Generator().manual_seed(0)
    p = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64)
    counts = torch.bincount(torch.multinomial(p, 5000, True, generator=g), minlength=4)
    assert chi_square(counts, p)[2] > 1e-4
    wrong = torch.tensor([0.45, 0.35, 0.15, 0.05], dtype=torch.float64)
    assert chi_square(counts, wrong)[2] < 1e-4
