"""The JSON report (versioned schema: ``docs/conformance-schema.json``), its Markdown summary and
its one-line, badge-ready summary; pure functions of the collected per-test records, so they
can be tested and re-rendered without pytest.

Schema history: 1.0 — the first published form; 1.1 — ``engine.plugin_api_version`` (the
contract the suite ran against), ``platform.plugin_api_version`` (the one the plugin targets),
``suite.attention_backend`` (the backend named with ``--attention-backend``, else null) and
``summary.line`` (:func:`summary_line`). A MINOR bump only adds fields; a consumer written
for 1.x reads any 1.y.
"""

from __future__ import annotations

import datetime
import os
import subprocess
from collections import defaultdict
from typing import Any

from anyware_conformance import REPORT_SCHEMA_VERSION

OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "not_applicable")


def git_sha() -> str | None:
    """``$ANYWARE_COMMIT`` when set (a copy of the tree whose .git is absent or stale), else the
    engine checkout's commit, else ``$GITHUB_SHA``, else None."""
    import anyware

    if os.environ.get("ANYWARE_COMMIT"):
        return os.environ["ANYWARE_COMMIT"]

    where = os.path.dirname(os.path.abspath(anyware.__file__))
    try:
        out = subprocess.run(["git", "-C", where, "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=False)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return os.environ.get("GITHUB_SHA")


def _worst(checks: list[dict[str, Any]]) -> dict[str, Any]:
    stats = [c for c in checks if "max_abs" in c]
    if not stats:
        return {}
    worst = max(stats, key=lambda c: c["max_abs"] - (c["atol"] + 0.0))
    return {
        "max_abs": max(c["max_abs"] for c in stats),
        "mean_abs": max(c["mean_abs"] for c in stats),
        "rel": max(c["rel"] for c in stats),
        "tolerance": {"atol": worst["atol"], "rtol": worst["rtol"], "source": worst["tolerance_source"]},
    }


def _percent(fraction: float) -> str:
    """"100%" for a whole verdict, else one decimal ("97.5%"), never rounded up to 100."""
    if fraction >= 1.0:
        return "100%"
    return f"{min(100 * fraction, 99.9):.1f}%"


def summary_line(report: dict[str, Any]) -> str:
    """One line for a README badge or a CI log: ``anyware-conformance: acme 100% (179/179
    claimed) · API 2.1`` — the platform (``cpu/example-hnd`` when an attention backend was
    named), the share of the required tests of its claimed capabilities that passed, and the
    plugin API (MAJOR.MINOR) the suite ran against."""
    s, p = report["summary"], report["platform"]
    api = ".".join(str(report["engine"].get("plugin_api_version", "?")).split(".")[:2])
    backend = report["suite"].get("attention_backend")
    name = f"{p['name']}/{backend}" if backend else p["name"]
    return (f"anyware-conformance: {name} {_percent(s['verdict_fraction'])} "
            f"({s['required_passed']}/{s['required']} claimed) · API {api}")


def badge(report: dict[str, Any]) -> dict[str, Any]:
    """A shields.io endpoint document (https://shields.io/badges/endpoint-badge) for the
    report: green at 100% of the claimed capabilities, red below."""
    s = report["summary"]
    api = ".".join(str(report["engine"].get("plugin_api_version", "?")).split(".")[:2])
    return {"schemaVersion": 1, "label": "anyware-conformance",
            "message": f"{_percent(s['verdict_fraction'])} ({s['required_passed']}/"
                       f"{s['required']}) · API {api}",
            "color": "brightgreen" if s["conformant"] else "red"}


def build_report(*, tests, platform, profile, tiers, waivers, known_failures, world_sizes,
                 duration_s, attention_backend: str | None = None) -> dict[str, Any]:
    from anyware.plugin import PLUGIN_API_VERSION
    from anyware.version import __version__

    rows = []
    for t in sorted(tests, key=lambda t: t["id"]):
        outcome = t.get("outcome") or "error"
        checks = t.get("checks", [])
        waived = sorted({c["tolerance_source"][8:] for c in checks
                         if c.get("tolerance_source", "").startswith("waiver: ")})
        rows.append({
            "id": t["id"], "tier": t["tier"], "capability": t["capability"], "dtype": t["dtype"],
            "world_size": t.get("world_size", 1), "since": t["since"],
            "provisional": t["provisional"], "outcome": outcome, "message": t.get("message", ""),
            "known_failure": t["reason"] if t["state"] == "known_failure" else None,
            "error": _worst(checks), "waiver": waived[0] if waived else None,
            "checks": checks, "duration_s": t.get("duration_s", 0.0),
        })
    counts = {o: sum(r["outcome"] == o for r in rows) for o in OUTCOMES}
    required = [r for r in rows if not r["provisional"] and r["outcome"] != "not_applicable"]
    req_passed = sum(r["outcome"] == "passed" for r in required)
    frac = req_passed / len(required) if required else 0.0
    report = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "suite": {"name": "anyware_conformance", "version": __version__, "profile": profile,
                  "tiers": tiers, "attention_backend": attention_backend},
        "engine": {"version": __version__, "git_sha": git_sha(),
                   "plugin_api_version": PLUGIN_API_VERSION},
        "platform": platform,
        "world_sizes": world_sizes,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "duration_s": round(duration_s, 2),
        "summary": {
            "total": len(rows), **counts,
            "provisional": sum(r["provisional"] for r in rows),
            "required": len(required), "required_passed": req_passed,
            "verdict": f"{100 * frac:.1f}%", "verdict_fraction": frac,
            "conformant": bool(required) and req_passed == len(required),
        },
        "waivers": waivers,
        "known_failures": known_failures,
        "tests": rows,
    }
    report["summary"]["line"] = summary_line(report)
    return report


def render_markdown(report: dict[str, Any]) -> str:
    s, p = report["summary"], report["platform"]
    rt = ", ".join(f"{k} {v}" for k, v in (p.get("runtime_versions") or {}).items())
    backend = report["suite"].get("attention_backend")
    lines = [
        f"# Anyware conformance: `{p['name']}`" + (f" with `{backend}`" if backend else ""),
        "",
        f"`{s['line']}`" if s.get("line") else "",
        "",
        f"**Verdict: {s['verdict']}** ({s['required_passed']}/{s['required']} required tests "
        f"passed) — {'CONFORMANT' if s['conformant'] else 'NOT CONFORMANT'}",
        "",
        f"- plugin: {p.get('package')} {p.get('version')} (`{p.get('entry_point')}`, targets "
        f"plugin API {p.get('plugin_api_version', '?')}; the suite ran against "
        f"{report['engine'].get('plugin_api_version', '?')})",
        f"- device: {p.get('device_name', '?')} ({p.get('device_type', '?')}, "
        f"{p.get('device_count', '?')} visible); runtime: {rt or '?'}",
        f"- suite {report['suite']['version']} (profile {report['suite']['profile']}, "
        + (f"attention backend `{backend}`, " if backend else "")
        + "tiers "
        f"{', '.join(report['suite']['tiers'])}); engine {report['engine']['version']} "
        f"git {report['engine']['git_sha'] or 'unknown'}; world sizes "
        f"{', '.join(map(str, report['world_sizes']))}",
        f"- {s['total']} tests: {s['passed']} passed, {s['failed']} failed, {s['error']} errors, "
        f"{s['skipped']} skipped (crash/hang), {s['xfailed']} known failures, "
        f"{s['not_applicable']} not applicable, {s['provisional']} provisional (not required)",
        "",
        "## Capability × dtype (passed / claimed / total)",
        "",
    ]
    cells: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in report["tests"]:
        c = cells[(r["capability"], r["dtype"])]
        c[2] += 1
        if r["outcome"] != "not_applicable":
            c[1] += 1
        c[0] += r["outcome"] == "passed"
    dtypes = sorted({d for _, d in cells}, key=lambda d: (d == "-", d))
    caps = sorted({c for c, _ in cells})
    lines.append("| capability | " + " | ".join(dtypes) + " |")
    lines.append("|---|" + "---|" * len(dtypes))
    for cap in caps:
        row = []
        for d in dtypes:
            c = cells.get((cap, d))
            row.append(f"{c[0]}/{c[1]}/{c[2]}" if c else "")
        lines.append(f"| {cap} | " + " | ".join(row) + " |")
    lines.append("")

    def section(title: str, rows: list[dict[str, Any]], fmt) -> None:
        if rows:
            lines.extend([f"## {title}", ""] + [f"- {fmt(r)}" for r in rows] + [""])

    def first_line(text: str) -> str:
        return (text.strip().splitlines() or [""])[-1][:300]

    tests = report["tests"]
    section("Failures", [r for r in tests if r["outcome"] in ("failed", "error")],
            lambda r: f"`{r['id']}`: {first_line(r['message'])}")
    section("Skipped (crash / hang)", [r for r in tests if r["outcome"] == "skipped"],
            lambda r: f"`{r['id']}`: {first_line(r['message'])}")
    section("Known failures (strict xfail)", [r for r in tests if r["outcome"] == "xfailed"],
            lambda r: f"`{r['id']}`: {r['known_failure']}")
    section("Waivers", report["waivers"],
            lambda w: f"`{w['test']}` ({w['dtype']}): atol={w['atol']} rtol={w['rtol']} — {w['reason']}")
    section("Provisional (reported, not required)", [r for r in tests if r["provisional"]],
            lambda r: f"`{r['id']}`: {r['outcome']}" + (f" — {first_line(r['message'])}"
                                                         if r["message"] else ""))
    na = [r for r in tests if r["outcome"] == "not_applicable"]
    reasons: dict[str, int] = defaultdict(int)
    for r in na:
        reasons[first_line(r["message"]).removeprefix("not applicable: ")] += 1
    if na:
        lines.extend(["## Not applicable (from the declared capabilities)", ""])
        lines.extend(f"- {n} × {why}" for why, n in sorted(reasons.items()))
        lines.append("")
    return "\n".join(lines)
