"""Installing a plugin distribution the way a vendor's CI does (``pip install``, the real
pyproject and its entry points), but into a private ``--target`` directory that only the
subprocesses a test starts see (``PYTHONPATH``): nothing leaks into the test interpreter or
into other tests, and it is safe under pytest-xdist. Removing the directory uninstalls it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def pip_install(source: Path, target: Path, *, editable: bool = False) -> Path:
    """``pip install --no-deps --target TARGET [-e] SOURCE``; returns ``target``. The source is
    built from a private copy, so concurrent tests never share a build directory and nothing
    is written into the repository."""
    build = target.parent / f"{target.name}-src"
    if not editable:
        shutil.copytree(source, build, ignore=shutil.ignore_patterns(
            "build", "*.egg-info", "__pycache__", "out"))
        source = build
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-input", "-q",
           "--disable-pip-version-check", "--target", str(target)]
    cmd += ["-e", str(source)] if editable else [str(source)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    shutil.rmtree(build, ignore_errors=True)
    return target


def env_with(*paths: Path, **extra: str) -> dict[str, str]:
    """The environment of a subprocess that sees ``paths`` (install targets) on its path."""
    env = dict(os.environ, OMP_NUM_THREADS="1", **extra)
    env.pop("ANYWARE_PLATFORM", None)
    parts = [str(p) for p in paths] + [env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in parts if p)
    return env


def anyware(env: dict[str, str], cwd: Path, *args: str,
            timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the ``anyware`` command (``python -m anyware.cli.main``) in a subprocess."""
    return subprocess.run([sys.executable, "-m", "anyware.cli.main", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def platforms_json(env: dict[str, str], cwd: Path) -> dict[str, dict]:
    """``anyware platforms --json`` as name -> entry."""
    proc = anyware(env, cwd, "platforms", "--json", timeout=300)
    assert proc.stdout, proc.stderr[-3000:]
    return {p["name"]: p for p in json.loads(proc.stdout)["platforms"]}


def conformance(env: dict[str, str], cwd: Path, platform: str, report: Path,
                *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """``anyware conformance --platform PLATFORM --report REPORT ARGS``: the process and the JSON
    report (asserted to exist)."""
    proc = anyware(env, cwd, "conformance", "--platform", platform, "--report", str(report),
                   *args, timeout=900)
    path = report / "conformance.json"
    assert path.exists(), proc.stdout[-4000:] + proc.stderr[-3000:]
    return proc, json.loads(path.read_text())
