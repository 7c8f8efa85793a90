"""End to end, as a vendor's CI does it: ``anyware plugin new kitacme --device-type cpu``, then
``pip install`` the generated distribution (a private ``--target``; see install.py), check that
discovery lists it, run the whole conformance suite against it (-n 2) and expect 100% of the
claimed capabilities. The editable install (``pip install -e``) is checked for discovery.

A waiver is added to the generated waiver file before installing, so the run also proves the
file ships as package data and reaches the report."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from tests.kit.install import conformance, env_with, pip_install, platforms_json
from tests.kit.schema import errors

NAME = "kitacme"  # not "acme": a developer may have a real anyware-acme installed
WAIVER = """
[[waiver]]
test = "*test_rms_norm*"
dtype = "bfloat16"
atol = 0.05
rtol = 0.05
reason = "kit e2e: proves the waiver file ships and reaches the report"
"""


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("kit-e2e")
    from anyware.cli.main import main

    assert main(["plugin", "new", NAME, "--device-type", "cpu", "--dir", str(root / "gen")]) == 0
    with open(root / "gen" / f"anyware_{NAME}" / "conformance-waivers.toml", "a") as f:
        f.write(WAIVER)
    yield root
    shutil.rmtree(root, ignore_errors=True)  # the --target installs live here: uninstalled


@pytest.fixture(scope="module")
def installed(generated):
    return pip_install(generated / "gen", generated / "site")


def test_editable_install_is_discovered(generated):
    """``pip install -e``: the entry point is registered and the platform is imported from the
    generated source tree."""
    target = pip_install(generated / "gen", generated / "site-editable", editable=True)
    code = ("import site, sys; site.addsitedir(sys.argv[1]); from anyware.runtime import discover; "
            f"i = next(i for i in discover() if i.name == {NAME!r}); "
            "import inspect; print(i.available, i.package, inspect.getfile(i.cls))")
    import subprocess

    out = subprocess.run([sys.executable, "-c", code, str(target)], env=env_with(),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    available, package, where = out.stdout.split()
    assert (available, package) == ("True", f"anyware-{NAME}")
    assert where.startswith(str(generated / "gen")), where


def test_discovered_by_name_only(installed, generated):
    found = platforms_json(env_with(installed), generated)
    entry = found[NAME]
    assert entry["available"] and entry["explicit_only"], entry
    assert entry["package"] == f"anyware-{NAME}" and entry["entry_point"] == f"anyware_{NAME}.plugin"
    # installing it does not take auto-selection away from the CPU platform
    assert found["cpu"]["selected"] and not entry["selected"]


def test_whole_suite_passes_at_100_percent(installed, generated):
    report_dir = generated / "out"
    proc, report = conformance(env_with(installed), generated, NAME, report_dir, "-n", "2")
    s = report["summary"]
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert s["conformant"] and s["verdict"] == "100.0%" and s["failed"] == s["error"] == 0
    assert s["required"] == s["required_passed"] > 150
    assert report["platform"]["package"] == f"anyware-{NAME}"
    assert {t["tier"] for t in report["tests"] if t["outcome"] == "passed"} >= {
        "ops", "attention", "moe", "collectives", "memory", "engine"}
    assert [w["reason"] for w in report["waivers"]] == [
        "kit e2e: proves the waiver file ships and reaches the report"]
    assert (report_dir / "junit.xml").exists() and (report_dir / "conformance.md").exists()
    # the published schema accepts the real report; the one-line summary is printed and written
    assert errors(report) == []
    line = (report_dir / "summary.txt").read_text().strip()
    assert line == s["line"] and line.startswith(f"anyware-conformance: {NAME} 100% (")
    assert line in proc.stdout.splitlines()
    assert json.loads((report_dir / "badge.json").read_text())["color"] == "brightgreen"


def test_device_scaffolds_install_and_say_why_they_are_unavailable(generated):
    """``--device-type`` other than cpu (both ``--from`` bases): the plugin installs and loads
    (its imports resolve), and its probe reports it unavailable until the vendor writes it."""
    from anyware.cli.main import main

    variants = {"kitdev": ["--device-type", "kitdev"],
                "kittd": ["--from", "torchdev", "--device-type", "privateuseone"]}
    site = generated / "site-devices"
    for name, args in variants.items():
        assert main(["plugin", "new", name, *args, "--dir", str(generated / name)]) == 0
        pip_install(generated / name, site)
    found = platforms_json(env_with(site), generated)
    for name in variants:
        entry = found[name]
        assert not entry["available"]
        assert entry["reason"].startswith(f"unavailable: the {name} probe is not written yet"), entry
        assert f"anyware_{name}/platform.py" in entry["reason"]
