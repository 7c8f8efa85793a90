"""The conformance report's published JSON schema (docs/conformance-schema.json, draft 2020-12)
accepts the reports the suite writes — the checked-in ones of every platform and a fresh one
from ``build_report`` — and rejects malformed ones; the one-line summary and the badge say
what the report says. (The end-to-end kit test also validates a report of a real run.)"""

from __future__ import annotations

import copy
import json

import jsonschema
import pytest
from anyware.plugin import PLUGIN_API_VERSION
from anyware_conformance import REPORT_SCHEMA_VERSION
from anyware_conformance.report_format import badge, build_report, render_markdown, summary_line

from tests.kit.schema import REPO, SCHEMA, errors

API = ".".join(PLUGIN_API_VERSION.split(".")[:2])


def test_schema_is_valid_draft_2020_12():
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("path", sorted((REPO / "docs" / "conformance").glob("*/conformance.json")),
                         ids=lambda p: p.parent.name)
def test_checked_in_reports_validate(path):
    assert errors(json.loads(path.read_text())) == []


def _test(i: int, outcome: str, **kw) -> dict:
    t = {"id": f"test_ops.py::test_x[{i}]", "tier": "ops", "capability": "ops.x",
         "dtype": "float32", "since": "0.1.0", "provisional": False, "state": "required",
         "reason": "", "outcome": outcome, "message": "" if outcome == "passed" else "boom",
         "checks": [{"what": "out", "op": "x", "dtype": "float32", "reduction": 8,
                     "max_abs": 1e-7, "mean_abs": 1e-8, "rel": 1e-7, "atol": 1e-5,
                     "rtol": 1e-5, "tolerance_source": "table", "mismatched": 0}]}
    t.update(kw)
    return t


def report_of(outcomes: list[str]) -> dict:
    return build_report(
        tests=[_test(i, o) for i, o in enumerate(outcomes)],
        platform={"name": "acme", "package": "anyware-acme", "version": "0.1.0",
                  "entry_point": "anyware_acme.plugin", "plugin_api_version": API},
        profile="core", tiers=["ops"], waivers=[], known_failures=[], world_sizes=[1],
        duration_s=1.5)


def test_fresh_report_validates_and_summarises():
    report = report_of(["passed"] * 179)
    assert report["schema_version"] == REPORT_SCHEMA_VERSION
    assert errors(report) == []
    line = f"anyware-conformance: acme 100% (179/179 claimed) · API {API}"
    assert summary_line(report) == report["summary"]["line"] == line
    assert line in render_markdown(report)
    assert badge(report) == {"schemaVersion": 1, "label": "anyware-conformance",
                             "message": f"100% (179/179) · API {API}", "color": "brightgreen"}


def test_partial_verdict_is_never_rounded_to_100():
    report = report_of(["passed"] * 1999 + ["failed"])
    assert errors(report) == []
    assert report["summary"]["line"] == f"anyware-conformance: acme 99.9% (1999/2000 claimed) · API {API}"
    assert badge(report)["color"] == "red"
    half = report_of(["passed", "failed", "not_applicable"])
    assert "50.0% (1/2 claimed)" in half["summary"]["line"]


@pytest.mark.parametrize("break_it,where", [
    (lambda r: r.pop("summary"), "'summary' is a required property"),
    (lambda r: r["tests"][0].update(outcome="flaky"), "tests/0/outcome"),
    (lambda r: r["summary"].update(verdict="100"), "summary/verdict"),
    (lambda r: r.update(schema_version="2.0"), "schema_version"),
    (lambda r: r["tests"][0]["checks"][0].pop("op"), "tests/0/checks/0"),
    (lambda r: r.update(created="yesterday"), "created"),
])
def test_malformed_reports_are_rejected(break_it, where):
    report = copy.deepcopy(report_of(["passed", "failed"]))
    break_it(report)
    found = errors(report)
    assert any(where in e for e in found), found
