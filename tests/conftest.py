"""Shared test fixtures. Keep this file minimal: fixtures that only one directory needs live in
that directory's own conftest."""

from __future__ import annotations

import pytest
from anyware.runtime import ENV_VAR


@pytest.fixture(autouse=True)
def _no_platform_override(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's ``ANYWARE_PLATFORM`` must not change what the tests select."""
    monkeypatch.delenv(ENV_VAR, raising=False)


@pytest.fixture
def cpu_platform():
    """The CPU reference platform, loaded through discovery like any other plugin."""
    from anyware.runtime import load_platform

    return load_platform("cpu")
