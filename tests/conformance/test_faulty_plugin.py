"""The suite tests itself: every planted fault of tests/fixtures/faulty_plugin must make the
suite fail, and among the failures must be the test that targets that fault; the same plugin
without a fault must pass. Each variant runs only its tier, several variants at a time."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conformance.helpers import (
    FIXTURES,
    failing_ids,
    install_faulty_plugin,
    read_report,
    start_suite,
)

sys.path.insert(0, str(FIXTURES))
from faulty_plugin.faults import FAULTS

NO_FAULT_TIERS = "ops,attention,moe,collectives,graphs,memory"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run every variant (in parallel, 3 at a time); returns name -> (exit code, log, report)."""
    root = tmp_path_factory.mktemp("faulty")
    site = install_faulty_plugin(root / "site")
    variants = {"none": NO_FAULT_TIERS, **{name: spec[0] for name, spec in FAULTS.items()}}

    def one(name: str):
        report = root / f"report-{name}"
        # attention faults show in every dtype: run float32 only to keep the self-test fast
        extra = ("-k", "float32") if name != "none" and variants[name] == "attention" else ()
        proc = start_suite("faulty", report, tiers=variants[name], site=site, fault=name,
                           extra=extra)
        out, _ = proc.communicate(timeout=900)
        data = read_report(report) if (report / "conformance.json").exists() else None
        return name, (proc.returncode, out, data)

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(pool.map(one, variants))


def test_at_least_twelve_distinct_faults():
    assert len(FAULTS) >= 12
    tiers = {tier for tier, _, _ in FAULTS.values()}
    assert {"ops", "attention", "collectives", "graphs"} <= tiers


def test_no_fault_variant_passes(runs):
    rc, out, report = runs["none"]
    assert report is not None, out[-3000:]
    assert failing_ids(report) == [], out[-3000:]
    summary = report["summary"]
    assert summary["conformant"] and rc == 0, out[-3000:]
    # the faulty platform declares no float16: those tests are not applicable, not passed
    assert summary["not_applicable"] > 0
    assert any(t["tier"] == "graphs" and t["outcome"] == "passed" for t in report["tests"])


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_is_caught_by_its_test(runs, fault):
    tier, target, description = FAULTS[fault]
    rc, out, report = runs[fault]
    assert report is not None, out[-3000:]
    failing = failing_ids(report)
    assert not report["summary"]["conformant"], f"{fault} ({description}) was not caught"
    assert rc != 0
    assert any(target in test_id for test_id in failing), (
        f"{fault} ({description}): no failing test matches {target!r}; failing: {failing}"
    )
    assert all(t["tier"] == tier for t in report["tests"])
