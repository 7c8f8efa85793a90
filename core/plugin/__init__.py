"""The plugin contract: what a platform plugin implements and what it receives. The only
module platform plugins import (besides ``anyware.kernels``).

Discovery, selection, configuration checks and the merging of extension contributions are
the core's business and live in ``anyware.runtime``; nothing here drives a plugin.

Everything listed in ``__all__`` is the public surface, snapshot-tested so that a change is
deliberate (see :mod:`anyware.plugin.version`).
"""

from anyware.plugin.capabilities import (
    COLLECTIVES,
    QUANTIZATIONS,
    AttentionFeatures,
    Capabilities,
)
from anyware.plugin.conformance import ConformanceMetadata, KnownFailure, Waiver
from anyware.plugin.errors import (
    AnywareError,
    CapabilityError,
    DeviceError,
    PlatformSelectionError,
    PluginError,
    PluginVersionError,
)
from anyware.plugin.events import CompletedEvent, DeviceEvent
from anyware.plugin.execution import EagerExecution, ExecutionStrategy, StepProgram, StepSample
from anyware.plugin.forward import ForwardBatch, ForwardMode, SpecInfo
from anyware.plugin.hookspecs import EXTENSION_GROUP, PLATFORM_GROUP, hookimpl, hookspec
from anyware.plugin.ops.attention import (
    AttentionBackend,
    AttentionLayer,
    AttentionSpec,
    KVCache,
    KVLayout,
)
from anyware.plugin.ops.comm import Communicator, TorchDistributedCommunicator
from anyware.plugin.ops.kernels import Fp8Rows, KernelOps, SamplingTensors
from anyware.plugin.ops.moe import ROUTER_SCORING, Dispatched, MoEBackend, MoESpec, MoEWeightLayout
from anyware.plugin.padding import Bucket, dummy_batch, pad_batch
from anyware.plugin.platform import (
    EXECUTION_KINDS,
    MemoryInfo,
    Platform,
    PlatformConfig,
    ProbeResult,
)
from anyware.plugin.version import PLUGIN_API_VERSION

__all__ = [
    "COLLECTIVES",
    "EXECUTION_KINDS",
    "EXTENSION_GROUP",
    "PLATFORM_GROUP",
    "PLUGIN_API_VERSION",
    "QUANTIZATIONS",
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
    "Fp8Rows",
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
    "PlatformSelectionError",
    "PluginError",
    "PluginVersionError",
    "ProbeResult",
    "SamplingTensors",
    "SpecInfo",
    "StepProgram",
    "StepSample",
    "TorchDistributedCommunicator",
    "Waiver",
    "dummy_batch",
    "hookimpl",
    "hookspec",
    "pad_batch",
]
