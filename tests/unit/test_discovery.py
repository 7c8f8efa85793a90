"""Discovery and selection of platform plugins installed as their own distributions.

Each scenario writes real distributions (a module plus a ``.dist-info`` with ``METADATA`` and
``entry_points.txt``) into a temporary site directory and runs discovery in a fresh Python
process with that directory on ``PYTHONPATH``, so ``importlib.metadata`` finds them exactly as
it finds a ``pip install``-ed third-party plugin. Nothing in core knows these plugins.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from anyware.plugin import PLUGIN_API_VERSION
from anyware.runtime import ENV_VAR

PLATFORM_TEMPLATE = '''
import torch

from anyware.kernels.reference import ReferenceAttentionBackend, ReferenceOps
from anyware.plugin import Capabilities, MemoryInfo, Platform, ProbeResult, hookimpl


class TestAttention(ReferenceAttentionBackend):
    name = "test-attention"
    page_sizes = (16,)
    kv_dtypes = (torch.float32,)


class TestPlatform(Platform):
    name = {name!r}
    device_type = "cpu"
    dist_backend = "gloo"
    priority = {priority}
    plugin_api_version = {api!r}
    description = "test plugin {name}"

    @classmethod
    def _probe(cls):
{probe}

    def _capabilities(self):
        return Capabilities(dtypes=frozenset({{torch.float32}}))

    def _init_device(self, rank, local_rank):
        return torch.device("cpu")

    def device_count(self):
        return 1

    def memory_info(self):
        return MemoryInfo(1 << 30, 1 << 30)

    def synchronize(self):
        pass

    def _create_ops(self):
        return ReferenceOps()

    def _attention_backends(self):
        return [TestAttention]

    def _communicator(self, rank, world_size):
        raise NotImplementedError


@hookimpl
def anyware_platform():
    return TestPlatform
'''

AVAILABLE = 'return ProbeResult.yes("test device found")'


def platform_module(name: str, priority: int, probe: str = AVAILABLE, api: str | None = None) -> str:
    body = textwrap.indent(probe, " " * 8)
    return PLATFORM_TEMPLATE.format(
        name=name, priority=priority, probe=body, api=api or PLUGIN_API_VERSION
    )


def install_dist(
    site: Path, dist: str, version: str, modules: dict[str, str], entry_points: dict[str, dict]
) -> None:
    """Write a distribution into ``site`` as an installer would: modules + ``.dist-info``."""
    for module, source in modules.items():
        (site / f"{module}.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    groups = [
        f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in eps.items())
        for group, eps in entry_points.items()
    ]
    (info / "entry_points.txt").write_text("\n".join(groups))
    (info / "RECORD").write_text("")


def install_platform(site: Path, dist: str, version: str, name: str, source: str) -> None:
    module = f"{name}_anyware_plugin"
    install_dist(site, dist, version, {module: source}, {"anyware.platforms": {name: module}})


def run_python(site: Path, code: str, *args: str, env: dict[str, str] | None = None):
    """Run ``code`` in a fresh interpreter that sees the distributions in ``site``."""
    full_env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    full_env["PYTHONPATH"] = os.pathsep.join(
        [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )


DISCOVER_SCRIPT = """
import json, sys
from anyware.plugin import AnywareError
from anyware.runtime import choose, discover, load_platform

infos = discover()
out = {"infos": {i.name: {"package": i.package, "version": i.version, "available": i.available,
                          "reason": i.probe.reason, "priority": i.priority} for i in infos},
       "order": [i.name for i in infos], "select": {}, "load": {}}
for name in json.loads(sys.argv[1]):
    try:
        out["select"][str(name)] = {"ok": choose(infos, name).name}
    except AnywareError as exc:
        out["select"][str(name)] = {"error": type(exc).__name__, "message": str(exc)}
for name in json.loads(sys.argv[2]):
    try:
        p = load_platform(name)
        out["load"][str(name)] = {"ok": p.name, "type": type(p.platform).__name__}
    except AnywareError as exc:
        out["load"][str(name)] = {"error": type(exc).__name__, "message": str(exc)}
print(json.dumps(out))
"""

CLI = "import sys; from anyware.cli.main import main; sys.exit(main(sys.argv[1:]))"


def discover_in(site: Path, select=(None,), load=(), env=None) -> dict:
    proc = run_python(site, DISCOVER_SCRIPT, json.dumps(list(select)), json.dumps(list(load)), env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One site with a plugin of every kind of health, next to the in-tree cpu plugin."""
    site = tmp_path_factory.mktemp("zoo-site")
    install_platform(site, "anyware-good", "1.2.3", "good", platform_module("good", 10))
    install_platform(
        site, "anyware-nodevice", "0.4.0", "nodevice",
        platform_module("nodevice", 50, 'return ProbeResult.no("no frobnicator found; pip install frob")'),
    )
    install_platform(
        site, "anyware-boom", "0.1.0", "boom",
        platform_module("boom", 60, 'raise RuntimeError("driver exploded")'),
    )
    install_platform(
        site, "anyware-broken", "0.1.0", "broken",
        "import anyware_test_module_that_does_not_exist  # noqa\n",
    )
    install_platform(site, "anyware-future", "9.0.0", "future", platform_module("future", 70, api="99.0"))
    return site


@pytest.fixture(scope="module")
def zoo_result(zoo: Path) -> dict:
    return discover_in(zoo, select=[None, "cpu", "good", "nodevice", "future", "nope"], load=[None])


def test_every_plugin_is_reported(zoo_result):
    infos = zoo_result["infos"]
    ours = ["boom", "nodevice", "good", "broken", "cpu", "future"]
    assert set(ours) <= set(infos)  # (other in-tree platforms may be installed too)
    assert infos["cpu"]["available"]
    # sorted by priority (highest first), then name; a plugin that failed to load has none
    assert [n for n in zoo_result["order"] if n in ours] == ours


def test_available_third_party_plugin_is_discovered_and_selected(zoo_result):
    good = zoo_result["infos"]["good"]
    assert good == {"package": "anyware-good", "version": "1.2.3", "available": True,
                    "reason": "test device found", "priority": 10}
    # highest-priority *available* plugin wins over cpu (priority 0); no change to core needed
    assert zoo_result["select"]["None"] == {"ok": "good"}
    assert zoo_result["load"]["None"] == {"ok": "good", "type": "TestPlatform"}


def test_unavailable_plugin_reports_its_reason(zoo_result):
    info = zoo_result["infos"]["nodevice"]
    assert not info["available"]
    assert info["reason"] == "no frobnicator found; pip install frob"
    sel = zoo_result["select"]["nodevice"]
    assert sel["error"] == "PlatformSelectionError"
    assert "no frobnicator found" in sel["message"]


def test_probe_that_raises_is_reported_and_others_unaffected(zoo_result):
    info = zoo_result["infos"]["boom"]
    assert not info["available"]
    assert "RuntimeError" in info["reason"] and "driver exploded" in info["reason"]
    assert zoo_result["infos"]["good"]["available"]


def test_plugin_import_error_is_reported(zoo_result):
    info = zoo_result["infos"]["broken"]
    assert not info["available"]
    assert "ModuleNotFoundError" in info["reason"]
    assert "anyware_test_module_that_does_not_exist" in info["reason"]
    assert info["package"] == "anyware-broken"


def test_api_version_mismatch_is_a_clear_error(zoo_result):
    info = zoo_result["infos"]["future"]
    assert not info["available"]
    assert "PluginVersionError" in info["reason"]
    assert "99.0" in info["reason"] and PLUGIN_API_VERSION in info["reason"]
    sel = zoo_result["select"]["future"]
    assert sel["error"] == "PlatformSelectionError"
    assert "99.0" in sel["message"] and PLUGIN_API_VERSION in sel["message"]


def test_explicit_override_by_argument(zoo_result):
    assert zoo_result["select"]["cpu"] == {"ok": "cpu"}
    assert zoo_result["select"]["good"] == {"ok": "good"}


def test_unknown_name_lists_candidates(zoo_result):
    sel = zoo_result["select"]["nope"]
    assert sel["error"] == "PlatformSelectionError"
    for name in ("nope", "cpu", "good", "nodevice"):
        assert name in sel["message"]


def test_override_by_environment(zoo):
    result = discover_in(zoo, select=[None, "good"], load=[None], env={ENV_VAR: "cpu"})
    assert result["select"]["None"] == {"ok": "cpu"}
    assert result["load"]["None"]["ok"] == "cpu"
    # an explicit argument beats the environment
    assert result["select"]["good"] == {"ok": "good"}


def test_tie_at_top_priority_is_an_error_naming_both(tmp_path):
    for name in ("alpha", "beta"):
        install_platform(tmp_path, f"anyware-{name}", "1.0", name, platform_module(name, 30))
    result = discover_in(tmp_path, select=[None, "alpha"])
    sel = result["select"]["None"]
    assert sel["error"] == "PlatformSelectionError"
    assert "alpha" in sel["message"] and "beta" in sel["message"]
    assert result["select"]["alpha"] == {"ok": "alpha"}


EXTENSION = '''
import torch

from anyware.kernels.reference import ReferenceAttentionBackend
from anyware.plugin import CapabilityError, hookimpl


class DemoBackend(ReferenceAttentionBackend):
    name = "demo-ext"
    priority = 100


@hookimpl
def anyware_attention_backends(platform):
    if platform.name == "cpu":
        return [DemoBackend]
    return None


@hookimpl
def anyware_configure(platform, config):
    if config.page_size == 4:
        raise CapabilityError("demo-ext refuses page size 4")
'''

EXTENSION_SCRIPT = """
import json, torch
from anyware.plugin import AttentionSpec, CapabilityError, PlatformConfig
from anyware.runtime import load_platform

p = load_platform("cpu")
spec = AttentionSpec(1, 2, 1, 8, 8, torch.float32, 4, 64)
out = {"backends": [b.name for b in p.attention_backends()],
       "default": type(p.attention_backend(spec)).__name__,
       "named": type(p.attention_backend(spec, "torch-reference")).__name__,
       "caps_backend": p.capabilities().attention_backend}
try:
    p.configure(PlatformConfig(page_size=4))
    out["configure"] = "accepted"
except CapabilityError as exc:
    out["configure"] = str(exc)
out["configure_ok"] = p.configure(PlatformConfig(page_size=2)).page_size
print(json.dumps(out))
"""


def test_extension_plugin_contributes_attention_backend(tmp_path):
    install_dist(
        tmp_path, "anyware-demo-ext", "0.2.0", {"demo_ext": EXTENSION},
        {"anyware.extensions": {"demo": "demo_ext"}},
    )
    proc = run_python(tmp_path, EXTENSION_SCRIPT)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["backends"][0] == "demo-ext"
    assert "torch-reference" in out["backends"]
    assert out["default"] == "DemoBackend"  # highest priority
    assert out["caps_backend"] == "demo-ext"  # the capabilities follow the default backend
    assert out["named"] == "ReferenceAttentionBackend"
    assert out["configure"] == "demo-ext refuses page size 4"  # lifecycle hook ran
    assert out["configure_ok"] == 2


def test_cli_table(zoo):
    proc = run_python(zoo, CLI, "platforms")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    rows = {line.split()[1] if line.startswith("*") else line.split()[0]: line
            for line in text.splitlines() if line.strip()}
    assert rows["good"].startswith("*")  # the selected one is marked
    assert "anyware-good 1.2.3" in rows["good"] and "available" in rows["good"]
    assert "dtypes=float32" in rows["good"]  # capability summary
    assert "unavailable" in rows["nodevice"] and "no frobnicator found" in rows["nodevice"]
    assert "driver exploded" in rows["boom"]
    assert "ModuleNotFoundError" in rows["broken"]
    assert "99.0" in rows["future"]
    assert "selected: good" in text
    assert "Traceback" not in proc.stderr


def test_cli_json_and_overrides(zoo):
    proc = run_python(zoo, CLI, "platforms", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["selected"] == "good" and doc["error"] is None
    assert doc["plugin_api_version"] == PLUGIN_API_VERSION
    by_name = {p["name"]: p for p in doc["platforms"]}
    assert by_name["good"]["selected"] and not by_name["cpu"]["selected"]
    assert by_name["good"]["capabilities"]["page_sizes"] == [16]  # from its backend
    assert by_name["good"]["capabilities"]["attention_backend"] == "test-attention"
    assert by_name["boom"]["capabilities"] is None

    proc = run_python(zoo, CLI, "platforms", "--json", env={ENV_VAR: "cpu"})
    assert json.loads(proc.stdout)["selected"] == "cpu"
    proc = run_python(zoo, CLI, "platforms", "--json", "--platform", "good", env={ENV_VAR: "cpu"})
    assert json.loads(proc.stdout)["selected"] == "good"


def test_cli_unknown_platform_exits_nonzero_naming_candidates(zoo):
    proc = run_python(zoo, CLI, "platforms", env={ENV_VAR: "nope"})
    assert proc.returncode != 0
    assert "nope" in proc.stderr and "cpu" in proc.stderr and "good" in proc.stderr
    assert "Traceback" not in proc.stderr
