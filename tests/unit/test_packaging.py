"""Packaging: the `src/` links that map directories to import names, and `import anyware` from
the parent directory of a clone named `anyware` (a namespace package there must not shadow the
installed package)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_src_links_cover_every_package_root():
    expected = {"anyware": ROOT / "core", "anyware_conformance": ROOT / "conformance"}
    for platform in (ROOT / "platforms").iterdir():
        if (platform / "__init__.py").is_file():
            expected[f"anyware_{platform.name}"] = platform
    links = {p.name: p for p in (ROOT / "src").iterdir() if not p.name.endswith(".egg-info")}
    assert set(links) == set(expected), "add the missing link: ln -s ../platforms/<x> src/anyware_<x>"
    for name, link in links.items():
        assert link.is_symlink() and link.resolve() == expected[name].resolve(), name


def test_import_from_parent_of_a_clone_named_anyware(tmp_path):
    (tmp_path / "anyware" / "core").mkdir(parents=True)  # a clone's top level: no __init__.py
    code = "import anyware, anyware_cpu; print(anyware.__file__); anyware.Engine; anyware.SamplingParams"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("__init__.py"), out.stdout
