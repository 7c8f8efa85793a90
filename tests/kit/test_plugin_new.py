"""``anyware plugin new``: name validation, what the generated distribution contains, that it
imports only what a platform may import, that its waiver file parses, and that the templates
ship as package data. (The end-to-end install + conformance run is test_plugin_e2e.py.)"""

from __future__ import annotations

import ast
import fnmatch
import importlib.util
import re
import tomllib
from pathlib import Path

import pytest
from anyware.cli.main import main
from anyware.cli.plugin_new import (
    FILES,
    TEMPLATE_DIR,
    PluginNameError,
    PluginSpec,
    generate,
    render,
    validate,
)
from anyware.plugin import PLUGIN_API_VERSION, ConformanceMetadata, KnownFailure, Waiver

REPO = Path(__file__).resolve().parents[2]
ALLOWED_IMPORTS = {"cpu": {"anyware.plugin", "anyware.kernels"},
                   "torchdev": {"anyware.plugin", "anyware.kernels", "anyware_torchdev"}}


@pytest.mark.parametrize("bad", ["Acme", "9acme", "acme-npu", "ac me", "", "class", "a" * 33,
                                 "_acme", "acmé"])
def test_invalid_names_are_refused_with_the_rule(bad):
    with pytest.raises(PluginNameError, match=r"invalid platform name.*lowercase letters"):
        validate(bad, "cpu", "cpu")


def test_suggests_a_valid_name():
    with pytest.raises(PluginNameError, match=r"e\.g\. 'acme_npu'"):
        validate("Acme-NPU", "cpu", "cpu")


def test_torchdev_needs_a_device_module():
    with pytest.raises(PluginNameError, match="--from torchdev"):
        validate("acme", "cpu", "torchdev")
    with pytest.raises(PluginNameError, match="--device-type"):
        validate("acme", "Bad Type", "cpu")


def test_cli_refuses_a_taken_name_and_a_non_empty_dir(tmp_path, capsys):
    assert main(["plugin", "new", "cpu", "--dir", str(tmp_path / "x")]) == 2
    assert "already installed" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    assert main(["plugin", "new", "kitnew", "--dir", str(tmp_path / "full")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"


def test_names_derived_from_the_platform_name():
    spec = PluginSpec("acme_npu", "privateuseone", "torchdev")
    assert (spec.dist, spec.pkg, spec.cls) == ("anyware-acme-npu", "anyware_acme_npu",
                                               "AcmeNpuPlatform")


def _imports(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module)
    return names


VARIANTS = [("cpu", "cpu"), ("cpu", "acmedev"), ("torchdev", "privateuseone")]


@pytest.mark.parametrize("base,device_type", VARIANTS)
def test_generated_distribution(tmp_path, base, device_type):
    spec = validate("acme", device_type, base)
    files = {p.relative_to(tmp_path).as_posix() for p in generate(spec, tmp_path)}
    assert files == {t.format(pkg="anyware_acme") for t in FILES.values()}
    project = tomllib.loads((tmp_path / "pyproject.toml").read_text())
    assert project["project"]["name"] == "anyware-acme"
    assert project["project"]["entry-points"]["anyware.platforms"] == {"acme": "anyware_acme.plugin"}
    assert "conformance-waivers.toml" in project["tool"]["setuptools"]["package-data"]["anyware_acme"]
    platform_src = (tmp_path / "anyware_acme" / "platform.py").read_text()
    for path in (tmp_path / "anyware_acme").glob("*.py"):
        source = path.read_text()
        compile(source, str(path), "exec")
        for name in _imports(source):
            if name.startswith("anyware") and not name.startswith("anyware_acme"):
                assert any(name == a or name.startswith(a + ".") for a in ALLOWED_IMPORTS[base]), (
                    f"{path.name} imports {name}: a platform imports only {ALLOWED_IMPORTS[base]}")
    tree = ast.parse(platform_src)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "AcmePlatform")
    methods = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
    hooks = {"_probe", "_capabilities", "_create_ops", "_attention_backends", "_moe_backends",
             "_communicator", "_conformance_metadata"}
    if base == "cpu":
        hooks |= {"_init_device", "device_count", "memory_info", "synchronize"}
    assert hooks <= methods, hooks - methods
    major, minor = PLUGIN_API_VERSION.split(".")[:2]
    assert f'plugin_api_version = "{major}.{minor}"' in platform_src
    # the probe: available (by name) on the CPU; "unavailable: <reason>" until written elsewhere
    if device_type == "cpu":
        assert "ProbeResult.on_request(" in platform_src
    else:
        assert re.search(r'ProbeResult\.no\(\s*"unavailable: ', platform_src)
        assert "ProbeResult.yes(" not in platform_src.replace("#     return ProbeResult.yes", "")
    workflow = (tmp_path / ".github" / "workflows" / "conformance.yml").read_text()
    assert "anyware conformance --platform acme --report out/ -n auto" in workflow
    assert "<<<" not in "".join(p.read_text() for p in tmp_path.rglob("*") if p.is_file())


def _waivers_module(tmp_path):
    generate(validate("acme", "cpu", "cpu"), tmp_path)
    spec = importlib.util.spec_from_file_location("kit_generated_waivers",
                                                  tmp_path / "anyware_acme" / "waivers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_waiver_file_as_generated_is_empty_and_its_examples_parse(tmp_path):
    waivers = _waivers_module(tmp_path)
    text = (tmp_path / "anyware_acme" / "conformance-waivers.toml").read_text()
    assert waivers.parse(text) == ConformanceMetadata()
    # the commented examples are the format: uncommented, they parse to what they say
    examples = "\n".join(line[7:] for line in text.splitlines() if line.startswith("#      "))
    meta = waivers.parse(examples)
    assert meta.waivers == (Waiver("*test_attention*", 2e-2, 2e-2, meta.waivers[0].reason,
                                   "bfloat16"),)
    assert meta.known_failures == (KnownFailure("*tree_verify*", meta.known_failures[0].issue,
                                                meta.known_failures[0].reason),)


@pytest.mark.parametrize("text,error", [
    ('[[waiver]]\ntest = "x"\natol = 1\nrtol = 1\n', "missing keys \\['reason'\\]"),
    ('[[waiver]]\ntest = "x"\natol = 1\nrtol = 1\nreason = " "\n', "needs a reason"),
    ('[[waiver]]\ntest = "x"\natol = 1\nrtol = 1\nreason = "r"\ntol = 2\n', "unknown keys \\['tol'\\]"),
    ('[[waivers]]\ntest = "x"\n', "unknown tables \\['waivers'\\]"),
    ('[[known_failure]]\ntest = "x"\nreason = "r"\n', "missing keys \\['issue'\\]"),
])
def test_waiver_file_errors_name_the_entry(tmp_path, text, error):
    with pytest.raises(ValueError, match=error):
        _waivers_module(tmp_path).parse(text)


def test_templates_ship_as_package_data():
    """Every template matches a package_data glob of the ``anyware`` package in setup.py, so
    ``anyware plugin new`` works from a wheel, not only from a checkout."""
    setup_py = (REPO / "setup.py").read_text()
    globs = ast.literal_eval(re.search(r'"anyware": (\[[^\]]*\])', setup_py).group(1))
    templates = [p.relative_to(REPO / "core").as_posix() for p in TEMPLATE_DIR.iterdir()]
    assert {f.split("/")[-1] for f in templates} >= {t.format(base=b) for t in FILES
                                                     for b in ("cpu", "torchdev")}
    for rel in templates:
        assert any(fnmatch.fnmatch(rel, g) and rel.count("/") == g.count("/") for g in globs), (
            f"{rel} is not in setup.py's package_data for anyware: it would not ship in the wheel")


def test_render_is_deterministic():
    spec = validate("acme", "cpu", "cpu")
    assert render(spec) == render(spec)
