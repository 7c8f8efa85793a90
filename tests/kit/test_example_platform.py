"""The out-of-tree example (examples/anyware-example-platform), installed like a vendor's
package (``pip install`` into a private ``--target``; the core never imports it), passes the
conformance suite both ways it extends Anyware:

* as its own platform ``example`` (head-major attention as the default backend): the whole
  suite, 100% of what it claims;
* as a backend contributed to the in-tree ``cpu`` platform through the
  ``anyware_attention_backends`` hook, selected by name: the attention and memory tiers.

Installing it must not change what the cpu platform does unless the backend is named."""

from __future__ import annotations

import shutil

import pytest

from tests.kit.install import REPO, anyware, conformance, env_with, pip_install, platforms_json
from tests.kit.schema import errors

EXAMPLE = REPO / "examples" / "anyware-example-platform"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("kit-example")
    yield pip_install(EXAMPLE, root / "site")
    shutil.rmtree(root, ignore_errors=True)  # uninstalls it


def _passes(proc, report, min_required: int) -> dict:
    s = report["summary"]
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert s["conformant"] and s["failed"] == s["error"] == 0, proc.stdout[-4000:]
    assert s["required"] == s["required_passed"] >= min_required
    assert errors(report) == []
    return s


def test_discovered_and_cpu_default_unchanged(site, tmp_path):
    found = platforms_json(env_with(site), tmp_path)
    example = found["example"]
    assert example["available"] and example["explicit_only"]
    assert example["package"] == "anyware-example-platform"
    assert example["capabilities"]["attention_backend"] == "example-hnd"
    # the contributed backend ranks below the cpu platform's own: the default is unchanged
    assert found["cpu"]["capabilities"]["attention_backend"] == "torch-reference"


def test_example_platform_whole_suite(site, tmp_path):
    proc, report = conformance(env_with(site), tmp_path, "example", tmp_path / "out", "-n", "2")
    _passes(proc, report, 150)
    assert report["platform"]["capabilities"]["attention_backend"] == "example-hnd"
    assert report["platform"]["plugin_api_version"] == "2.1"
    passed = {t["capability"] for t in report["tests"] if t["outcome"] == "passed"}
    assert {"attention.extend", "attention.decode", "attention.tree_verify",
            "attention.sliding_window", "memory.kv_pool"} <= passed
    assert any(t["tier"] == "engine" and t["outcome"] == "passed" for t in report["tests"])


def test_backend_contributed_to_cpu(site, tmp_path):
    proc, report = conformance(env_with(site), tmp_path, "cpu", tmp_path / "out",
                               "--attention-backend", "example-hnd",
                               "--tiers", "attention,memory", "-n", "2")
    s = _passes(proc, report, 40)
    assert report["suite"]["attention_backend"] == "example-hnd"
    assert report["platform"]["capabilities"]["attention_backend"] == "example-hnd"
    # the capabilities tested are the contributed backend's: its page sizes, not the cpu's
    assert report["platform"]["capabilities"]["page_sizes"] == [16, 1, 4, 64]
    assert s["line"].startswith("anyware-conformance: cpu/example-hnd 100% (")


def test_naming_an_unknown_backend_fails_clearly(tmp_path):
    proc = anyware(env_with(), tmp_path, "conformance", "--platform", "cpu",
                   "--attention-backend", "no-such-backend", "--tiers", "memory",
                   "--report", str(tmp_path / "out"))
    assert proc.returncode != 0
    assert proc.returncode == 2 and "has no attention backend 'no-such-backend' (known: torch-reference" in proc.stderr


def test_example_imports_only_the_contract_and_the_kernels():
    import ast

    for path in (EXAMPLE / "anyware_example").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for name in names:
                if name.startswith("anyware") and not name.startswith("anyware_example"):
                    assert name.split(".")[:2] in (["anyware", "plugin"], ["anyware", "kernels"]), (
                        f"{path.name} imports {name}: a plugin imports only anyware.plugin and "
                        "anyware.kernels")
