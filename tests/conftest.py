"""Shared test fixtures. Keep this file minimal: fixtures that only one directory needs live in
that directory's own conftest."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from anyware.runtime import ENV_VAR

JAX_CACHE_ENV = "ANYWARE_JAX_CACHE_DIR"  # the tpu platform's persistent compilation cache


def pytest_configure(config: pytest.Config) -> None:
    """One JAX compilation cache for the whole run (xdist workers and the subprocesses the
    tests start inherit it), so tests that compile the same tpu programs share them; a fresh
    directory, so a run measures what CI pays and leaves nothing in ``~/.cache``."""
    if hasattr(config, "workerinput") or os.environ.get(JAX_CACHE_ENV):
        return
    path = tempfile.mkdtemp(prefix="anyware-jax-cache-")
    os.environ[JAX_CACHE_ENV] = path
    config._anyware_jax_cache = path


def pytest_unconfigure(config: pytest.Config) -> None:
    path = getattr(config, "_anyware_jax_cache", None)
    if path is not None:
        os.environ.pop(JAX_CACHE_ENV, None)
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_platform_override(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's ``ANYWARE_PLATFORM`` must not change what the tests select."""
    monkeypatch.delenv(ENV_VAR, raising=False)


@pytest.fixture
def cpu_platform():
    """The CPU reference platform, loaded through discovery like any other plugin."""
    from anyware.runtime import load_platform

    return load_platform("cpu")
