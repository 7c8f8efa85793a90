"""Fixtures shared by every tier: the platform under test, its capabilities, a `Checker`
bound to the test, and a per-test seeded generator (fresh inputs per test, reproducible
per run; set ``ANYWARE_CONFORMANCE_SEED`` to draw other inputs)."""

from __future__ import annotations

import os
import zlib

import pytest
import torch
from anyware_conformance.checks import Checker

HARNESS = "anyware-conformance-harness"


@pytest.fixture(scope="session")
def harness(pytestconfig):
    return pytestconfig.pluginmanager.get_plugin(HARNESS)


@pytest.fixture(scope="session")
def platform(harness):
    return harness.platform()


@pytest.fixture(scope="session")
def caps(platform):
    return platform.capabilities()


@pytest.fixture(scope="session")
def device(platform):
    return platform.device


@pytest.fixture
def conf(request, platform) -> Checker:
    return Checker(request.node, platform)


@pytest.fixture
def gen(request) -> torch.Generator:
    base = int(os.environ.get("ANYWARE_CONFORMANCE_SEED", "0"))
    g = torch.Generator()
    g.manual_seed(base * 1_000_003 + zlib.crc32(request.node.nodeid.encode()))
    return g


def pytest_generate_tests(metafunc):
    """Page sizes come from the declared capabilities: the smallest and the largest up to 64
    in the core profile, every declared one in the full profile."""
    if "page_size" in metafunc.fixturenames:
        config = metafunc.config
        sizes = tuple(config.pluginmanager.get_plugin(HARNESS).capabilities().page_sizes)
        if config.getoption("--anyware-profile") != "full":
            small = [s for s in sizes if s <= 64] or list(sizes)
            sizes = tuple(sorted({min(small), max(small)}))
        metafunc.parametrize("page_size", sizes, ids=[f"page{s}" for s in sizes])
