"""`PlatformDriver` (anyware.runtime): the core drives a plugin's hooks in lifecycle order,
relays the extensions' hooks, merges their contributions and names the platform in every
error. The plugin is the CPU platform with recording hooks; the extension is an in-process
pluggy plugin registered exactly as discovery registers one."""

from __future__ import annotations

import pytest
import torch
from anyware.plugin import (
    CapabilityError,
    ConformanceMetadata,
    DeviceError,
    KnownFailure,
    PlatformConfig,
    PluginError,
    TorchDistributedCommunicator,
    Waiver,
    hookimpl,
)
from anyware.runtime import PlatformDriver
from anyware.runtime.discovery import plugin_manager
from anyware_cpu.platform import CpuPlatform


class Recording(CpuPlatform):
    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    def _configure(self, config):
        self.log.append(f"platform.configure page={config.page_size}")
        return config

    def _init_device(self, rank, local_rank):
        self.log.append(f"platform.init_device rank={rank} local={local_rank}")
        return super()._init_device(rank, local_rank)

    def _model_loaded(self, model):
        self.log.append("platform.model_loaded")

    def _shutdown(self):
        self.log.append("platform.shutdown")

    def _conformance_metadata(self):
        return ConformanceMetadata(waivers=(Waiver("test_a", 1e-2, 1e-2, "platform"),))


class Contributed(TorchDistributedCommunicator):
    name = "contributed"
    priority = 5

    def __init__(self, rank, world_size):  # no process group needed for this test
        self.rank, self.world_size, self.calls = rank, world_size, 0


class Extension:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    @hookimpl
    def anyware_configure(self, platform, config):
        self.log.append(f"ext.configure {platform.name} seen={platform.config is None}")

    @hookimpl
    def anyware_init_device(self, platform, rank):
        self.log.append(f"ext.init_device {platform.device}")

    @hookimpl
    def anyware_model_loaded(self, platform, model):
        self.log.append("ext.model_loaded")

    @hookimpl
    def anyware_shutdown(self, platform):
        self.log.append("ext.shutdown")

    @hookimpl
    def anyware_communicators(self, platform):
        return [Contributed]

    @hookimpl
    def anyware_conformance_metadata(self, platform):
        return ConformanceMetadata(known_failures=(KnownFailure("test_b", "#1", "ext"),))


@pytest.fixture
def driven():
    log: list[str] = []
    pm = plugin_manager()
    pm.register(Extension(log), name="ext:recording")
    return PlatformDriver(Recording(log), pm.hook), log


def test_lifecycle_order_and_received_state(driven):
    driver, log = driven
    config = driver.configure(PlatformConfig(page_size=8))
    assert driver.platform.config is config and driver.config is config
    device = driver.init_device(rank=3, local_rank=1)
    assert driver.platform.device == device and driver.platform.rank == 3
    driver.model_loaded(torch.nn.Linear(1, 1))
    driver.shutdown()
    assert log == [
        "platform.configure page=8",
        "ext.configure cpu seen=True",  # extensions see the final config before it is stored
        "platform.init_device rank=3 local=1",
        "ext.init_device cpu",
        "platform.model_loaded",
        "ext.model_loaded",
        "ext.shutdown",
        "platform.shutdown",
    ]


def test_contributions_merge(driven):
    driver, _ = driven
    assert type(driver.communicator(0, 2)) is Contributed  # contributed outranks the platform's
    meta = driver.conformance_metadata()
    assert [w.reason for w in meta.waivers] == ["platform"]
    assert [k.issue for k in meta.known_failures] == ["#1"]


def test_errors_name_the_platform():
    class Broken(CpuPlatform):
        def _init_device(self, rank, local_rank):
            raise RuntimeError("no such device")

        def allocate(self, shape, dtype):
            raise RuntimeError("out of memory")

        def _capabilities(self):
            return {"dtypes": "all"}

    driver = PlatformDriver(Broken())
    with pytest.raises(DeviceError, match=r"'cpu'.*no such device"):
        driver.init_device()
    with pytest.raises(DeviceError, match=r"'cpu'.*out of memory"):
        driver.allocate((4,), torch.float32)
    with pytest.raises(PluginError, match=r"'cpu'.*not Capabilities"):
        driver.capabilities()


def test_undeclared_requests_are_refused(cpu_platform):
    max_world = cpu_platform.capabilities().max_world_size
    with pytest.raises(CapabilityError, match=f"world size <= {max_world}"):
        cpu_platform.communicator(0, max_world + 1)
    with pytest.raises(CapabilityError, match="'graphs'"):
        cpu_platform.execution_strategy("graphs")
    assert cpu_platform.execution_strategy().kind == "eager"
