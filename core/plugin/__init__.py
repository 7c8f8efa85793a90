"""The plugin contract: the only module platform plugins import (besides anyware.kernels).

Everything listed in ``__all__`` is the public surface, snapshot-tested so that a change is
deliberate (see :mod:`anyware.plugin.version`).
"""

from anyware.plugin.capabilities import COLLECTIVES, AttentionFeatures, Capabilities
from anyware.plugin.conformance import ConformanceMetadata, KnownFailure, Waiver
from anyware.plugin.discovery import (
    ENV_VAR,
    EXTENSION_GROUP,
    PLATFORM_GROUP,
    PlatformInfo,
    choose,
    discover,
    load_platform,
)
from anyware.plugin.errors import (
    AnywareError,
    CapabilityError,
    DeviceError,
    PlatformSelectionError,
    PluginError,
    PluginVersionError,
)
from anyware.plugin.events import CompletedEvent, DeviceEvent
from anyware.plugin.execution import EagerExecution, ExecutionStrategy, StepProgram
from anyware.plugin.forward import ForwardBatch, ForwardMode, SpecInfo
from anyware.plugin.hookspecs import hookimpl, hookspec
from anyware.plugin.ops.attention import (
    AttentionBackend,
    AttentionLayer,
    AttentionSpec,
    KVCache,
    KVLayout,
)
from anyware.plugin.ops.comm import Communicator, TorchDistributedCommunicator
from anyware.plugin.ops.kernels import KernelOps, SamplingTensors
from anyware.plugin.ops.moe import ROUTER_SCORING, Dispatched, MoEBackend, MoESpec, MoEWeightLayout
from anyware.plugin.padding import Bucket, dummy_batch, pad_batch
from anyware.plugin.platform import (
    EXECUTION_KINDS,
    MemoryInfo,
    Platform,
    PlatformConfig,
    ProbeResult,
)
from anyware.plugin.version import PLUGIN_API_VERSION, check_api_version

__all__ = [
    "COLLECTIVES",
    "ENV_VAR",
    "EXECUTION_KINDS",
    "EXTENSION_GROUP",
    "PLATFORM_GROUP",
    "PLUGIN_API_VERSION",
    "ROUTER_SCORING",
    "AnywareError",
    "AttentionBackend",
    "AttentionFeatures",
    "AttentionLayer",
    "AttentionSpec",
    "Bucket",
    "Capabilities",
    "CapabilityError",
    "Communicator",
    "CompletedEvent",
    "ConformanceMetadata",
    "DeviceError",
    "DeviceEvent",
    "Dispatched",
    "EagerExecution",
    "ExecutionStrategy",
    "ForwardBatch",
    "ForwardMode",
    "KVCache",
    "KVLayout",
    "KernelOps",
    "KnownFailure",
    "MemoryInfo",
    "MoEBackend",
    "MoESpec",
    "MoEWeightLayout",
    "Platform",
    "PlatformConfig",
    "PlatformInfo",
    "PlatformSelectionError",
    "PluginError",
    "PluginVersionError",
    "ProbeResult",
    "SamplingTensors",
    "SpecInfo",
    "StepProgram",
    "TorchDistributedCommunicator",
    "Waiver",
    "check_api_version",
    "choose",
    "discover",
    "dummy_batch",
    "hookimpl",
    "hookspec",
    "load_platform",
    "pad_batch",
]
