"""The `Platform` base class: the hooks every platform plugin implements.

A plugin subclasses :class:`Platform` and implements its hooks; it never drives them itself.
The core wraps the selected instance in ``anyware.runtime.PlatformDriver``, which probes,
validates configurations against the declared capabilities, merges contributions of extension
plugins, translates failures into named exceptions and calls the hooks in this order, once per
process (rule 11):

``_probe`` (class method, at discovery) -> ``_capabilities`` (any time, may repeat) ->
``_configure`` -> ``_init_device`` (per rank) -> ops/backends/communicator/strategy ->
``_model_loaded`` -> ``_shutdown``.

What a plugin receives from the core is state on the instance: ``config`` (after configure),
``rank`` and ``device`` (after init_device), and ``ops()``, the shared kernel object.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from anyware.plugin.capabilities import AttentionFeatures, Capabilities
from anyware.plugin.conformance import ConformanceMetadata
from anyware.plugin.errors import CapabilityError, DeviceError
from anyware.plugin.events import CompletedEvent, DeviceEvent
from anyware.plugin.execution import ExecutionStrategy
from anyware.plugin.ops.attention import AttentionBackend
from anyware.plugin.ops.comm import Communicator
from anyware.plugin.ops.kernels import KernelOps
from anyware.plugin.ops.moe import MoEBackend

EXECUTION_KINDS = ("eager", "graphs", "compiled")


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of a probe: available or not, and why (a sentence that says what to do).

    explicit_only: available, but only when selected by name (``--platform`` /
    ``$ANYWARE_PLATFORM``); never picked by priority. For a platform that can run here in a
    degraded or emulated form (an accelerator platform on a host backend), so auto-selection
    still picks the platform made for this machine.
    """

    available: bool
    reason: str = ""
    explicit_only: bool = False

    @classmethod
    def yes(cls, reason: str = "") -> ProbeResult:
        """Available; ``reason`` says what was found ("2 CUDA devices, CUDA 13.0")."""
        return cls(True, reason)

    @classmethod
    def on_request(cls, reason: str) -> ProbeResult:
        """Available when selected by name only (``reason`` says what it runs on)."""
        return cls(True, reason, explicit_only=True)

    @classmethod
    def no(cls, reason: str) -> ProbeResult:
        """Unavailable; ``reason`` says why and what to do ("pip install anyware[rocm]")."""
        return cls(False, reason)


@dataclass(frozen=True)
class MemoryInfo:
    """Free and total bytes of one device's memory."""

    free_bytes: int
    total_bytes: int


@dataclass(frozen=True)
class PlatformConfig:
    """What the engine asks of a platform. The core fills the defaults and validates it against
    the capabilities before ``Platform._configure`` sees it.

    dtype / kv_cache_dtype: ``None`` lets the platform (``_default_dtype``) choose; the KV dtype
        then follows ``dtype``.
    page_size: ``None`` lets the attention backend choose its first declared size.
    world_size: ranks of the job (one device each).
    execution: "auto" (the platform's ``_default_execution``), "eager", "graphs" or "compiled".
    attention_backend: a backend name, or ``None`` for the highest-priority available one that
        computes in ``dtype``; after configure it always names the selected backend.
    attention_features: features the model/engine will use (sliding window, soft-cap, ...).
    max_batch_size: the most requests one forward will carry (graph buckets stop there).
    max_prefill_tokens: the most new tokens one forward will carry (the chunked-prefill size;
        prefill graph buckets stop there).
    extra: platform-specific settings (``--platform-option KEY=VALUE``); the platform's docs
        list its keys.
    quantization: the linear-layer quantization method the model will call (``"fp8"``: the
        ops' ``fp8_linear``), or ``None``; checked against ``Capabilities.quantization``. (2.2)
    """

    dtype: torch.dtype | None = None
    kv_cache_dtype: torch.dtype | None = None
    page_size: int | None = None
    world_size: int = 1
    execution: str = "auto"
    attention_backend: str | None = None
    attention_features: AttentionFeatures = field(
        default_factory=lambda: AttentionFeatures(verify=False, tree_mask=False)
    )
    max_batch_size: int = 256
    max_prefill_tokens: int = 2048
    extra: dict[str, Any] = field(default_factory=dict)
    quantization: str | None = None


class Platform(ABC):
    """Base class of platform plugins: implement the hooks, never call them yourself.

    Class attributes: ``name`` (what ``--platform`` takes; equals the entry-point name),
    ``device_type`` (torch device type), ``dist_backend`` (torch.distributed backend),
    ``priority`` (higher wins when several are available; the CPU is 0),
    ``plugin_api_version`` (the contract version the plugin targets), ``description`` (one line).

    The constructor takes no arguments and must stay cheap (no device work, no vendor imports):
    the core instantiates a platform to read its capabilities for ``anyware platforms``.
    Subclasses that override ``__init__`` call ``super().__init__()``.

    Hooks may raise; the core translates the exception into a named one (``DeviceError`` for
    the device hooks, ``PluginError`` for a malformed answer) that names the platform. Raise
    :class:`~anyware.plugin.errors.CapabilityError` to refuse a request with the reason.
    """

    name: ClassVar[str]
    device_type: ClassVar[str]
    dist_backend: ClassVar[str]
    priority: ClassVar[int] = 0
    plugin_api_version: ClassVar[str]
    description: ClassVar[str] = ""

    def __init__(self) -> None:
        #: the validated configuration, set by the core before ``_configure`` returns to it
        #: (``None`` until configure ran; a conformance run may never configure)
        self.config: PlatformConfig | None = None
        #: this process's global rank, set by the core before ``_init_device``
        self.rank = 0
        self._device: torch.device | None = None
        self._ops: KernelOps | None = None

    # ---------------------------------------------------------------- received state
    @property
    def device(self) -> torch.device:
        """This rank's device, as ``_init_device`` returned it. Raises ``DeviceError`` before
        init_device."""
        if self._device is None:
            raise DeviceError(f"platform {self.name!r}: init_device() has not been called")
        return self._device

    @device.setter
    def device(self, value: torch.device) -> None:
        """Set by the core after ``_init_device``; a plugin never assigns it."""
        self._device = value

    def ops(self) -> KernelOps:
        """This process's :class:`KernelOps`, built by ``_create_ops`` on first use and shared
        from then on (the model layers, the sampler and the platform's own backends use the
        same object, so its ``calls`` counters see every call). Call it after init_device;
        do not override it (override ``_create_ops``)."""
        if self._ops is None:
            self._ops = self._create_ops()
        return self._ops

    # ---------------------------------------------------------------- probe (discovery)
    @classmethod
    @abstractmethod
    def _probe(cls) -> ProbeResult:
        """Decide whether this platform can run in this process.

        Called: at discovery, for every installed platform, before any instance exists
        (``anyware platforms``, engine start-up, the conformance suite), possibly several
        times per process.

        Returns: :class:`ProbeResult` — ``yes(what was found)`` or ``no(why, what to do)``.

        May not: import vendor libraries eagerly (``importlib.util.find_spec`` is fine),
        initialise a device or a driver context, allocate device memory, spawn processes, or
        take long (rule 5). An exception is caught and reported as "unavailable"; it never
        takes the other platforms down.
        """

    # ---------------------------------------------------------------- capabilities
    @abstractmethod
    def _capabilities(self) -> Capabilities:
        """Declare the device and runtime facts of this platform (rule 6).

        Called: after instantiation, before configure and possibly before ``_probe`` returned
        "yes" on another machine (``anyware platforms --json``); the core caches the answer
        for the instance's lifetime.

        Returns: :class:`Capabilities`. KV-cache dtypes, page sizes and attention features are
        not declared here: the core derives them from the selected attention backend's class
        attributes.

        May not: initialise the device, read ``self.device`` or ``self.config``, or depend on
        anything that changes after it first returned (the answer must be stable).
        """

    # ---------------------------------------------------------------- configure
    def _default_dtype(self) -> torch.dtype:
        """The model dtype when ``PlatformConfig.dtype`` is ``None``; must be in
        ``Capabilities.dtypes``. Called during configure, before validation. Default: bf16."""
        return torch.bfloat16

    def _default_execution(self) -> str:
        """The execution kind when ``PlatformConfig.execution`` is "auto" (one of
        ``EXECUTION_KINDS`` the platform supports). Called during configure, before validation.
        Default: "eager"."""
        return "eager"

    def _configure(self, config: PlatformConfig) -> PlatformConfig:
        """Adjust or reject a configuration the core already validated.

        Called: once per process, after the core filled the defaults (dtype, KV dtype, page
        size, execution, attention backend) and checked them against the capabilities; before
        ``_init_device``. The conformance suite may call it again, with only ``quantization``
        and ``execution`` set, to learn whether a declared quantization method applies to the
        device found (a ``CapabilityError`` makes its tests not applicable): keep it free of
        side effects.

        Parameters: ``config`` — complete: no ``None`` dtype or page size, no "auto".

        Returns: the configuration to use (``dataclasses.replace`` it to change a field); the
        core stores it in ``self.config`` and hands it to the extensions' ``anyware_configure``.

        May not: touch the device (reading its properties, e.g. a compute capability, is
        allowed where the runtime does it without creating a context), or return a
        configuration that breaks the declared capabilities. Raise :class:`CapabilityError` with the reason to reject. Default:
        returns ``config`` unchanged.
        """
        return config

    # ---------------------------------------------------------------- device
    @abstractmethod
    def _init_device(self, rank: int, local_rank: int) -> torch.device:
        """Bind this process to its device and return it.

        Called: once per process, after configure (when the engine configured), with
        ``self.rank`` already set. ``rank`` is the global rank, ``local_rank`` the index of the
        device on this host (the core passes ``rank`` when the launcher gave none).

        Returns: the ``torch.device`` every tensor of this rank lives on; the core stores it
        in ``self.device``.

        May not: allocate large buffers (the KV pool comes later, through ``allocate``) or
        initialise ``torch.distributed`` (the launcher does). Raise when the device cannot be
        used; the core reports it as :class:`DeviceError` naming the platform.
        """

    @abstractmethod
    def device_count(self) -> int:
        """Devices of this platform visible to this process. Called at any time, also before
        init_device (the conformance suite spreads its workers over them). May not initialise
        a device context."""

    @abstractmethod
    def memory_info(self) -> MemoryInfo:
        """Free and total bytes of this rank's device memory. Called after init_device (the
        KV-cache budget, reports). May not allocate."""

    @abstractmethod
    def synchronize(self) -> None:
        """Block until all work queued on this rank's device has finished. Called after
        init_device (tests, benchmarks, reports); never on the engine's step path."""

    def kv_cache_budget(self, mem_fraction: float, reserve_bytes: int) -> int:
        """Bytes the engine may give the KV cache when the user set no explicit size.

        Called: once, after the model is loaded and before the KV pool is allocated.
        Parameters: ``mem_fraction`` (0..1, the user's ``--mem-fraction``), ``reserve_bytes``
        (the engine's estimate of its largest step's activations).
        Returns: a byte count (may be <= 0: the engine then reports that nothing fits).
        Default: ``mem_fraction`` of the free device memory minus ``reserve_bytes``. Override
        where the device memory is shared with the rest of the system (the CPU caps it).
        """
        return int(self.memory_info().free_bytes * mem_fraction) - reserve_bytes

    def record_event(self) -> DeviceEvent:
        """An event after the work queued so far on the current stream.

        Called: after init_device, once per engine step (overlap scheduling waits on it).
        Returns: a :class:`DeviceEvent`. May not: synchronise the device.
        Default: ``torch.Event`` for the device type; host devices (and other synchronous
        platforms) return a :class:`~anyware.plugin.events.CompletedEvent`.
        """
        if self.device.type == "cpu":
            return CompletedEvent()
        event = torch.Event(device=self.device)
        event.record()
        return event

    def copy_to_host(self, tensor: torch.Tensor) -> torch.Tensor:
        """Start copying a device tensor to host memory without waiting for the device.

        Called: after init_device, once per engine step for the sampled tokens.
        Returns: a host tensor that holds the values once an event recorded after this call
        has completed; never the device tensor itself.
        May not: synchronise the device.
        Default: a pinned buffer and a non-blocking copy (a clone for host tensors).
        """
        if tensor.device.type == "cpu":
            return tensor.clone()
        out = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
        out.copy_(tensor, non_blocking=True)
        return out

    def empty_cache(self) -> None:  # noqa: B027 - optional
        """Return the device allocator's cached blocks to the device.

        Called: at engine shutdown, after the execution strategy was closed and before
        ``_shutdown``; and after a model whose weights were quantised at load (their
        model-dtype copies are freed), before the KV cache is sized. May not: free memory
        that live tensors use. Default: nothing.
        """

    def manual_seed(self, seed: int) -> None:
        """Seed the host and device generators. Called once, after init_device.
        Default: ``torch.manual_seed``."""
        torch.manual_seed(seed)

    def device_name(self) -> str:
        """Human-readable device model for reports. Called after init_device. Default: the
        device type."""
        return self.device_type

    def runtime_versions(self) -> dict[str, str]:
        """Driver/runtime/library versions for reports (name -> version). Called after
        init_device. Default: torch's version."""
        return {"torch": torch.__version__}

    def allocate(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """A zero-filled tensor of ``shape`` and ``dtype`` on this rank's device.

        Called: after init_device, by the KV pool (one K and one V tensor per layer) and the
        conformance suite. Returns: the tensor, zeros everywhere (never uninitialised memory).
        Raise on failure (out of memory); the core reports it as :class:`DeviceError`.
        """
        return torch.zeros(shape, dtype=dtype, device=self.device)

    # ---------------------------------------------------------------- ops
    @abstractmethod
    def _create_ops(self) -> KernelOps:
        """Build the platform's norm/rotary/activation/KV-store/sampling kernels.

        Called: once per process, after init_device, through ``ops()`` (which caches it).
        Returns: a :class:`KernelOps` (often a ``ReferenceOps`` subclass that overrides what the
        platform accelerates). May not: return an object shared with another platform
        instance (its ``calls`` counter is per instance).
        """

    @abstractmethod
    def _attention_backends(self) -> list[type[AttentionBackend]]:
        """The platform's own attention backend classes (not instances), in any order.

        Called: at any time, also before init_device (capability derivation, configure,
        ``anyware platforms``). The core adds those contributed by extension plugins, orders
        all of them by ``priority`` and picks one: the highest-priority available one is the
        platform's *default* backend, whose ``features``, ``page_sizes`` and ``kv_dtypes``
        become the platform's effective capabilities.

        May not: import heavy vendor libraries at module import time of the platform
        (import inside this hook), or instantiate the backends.
        """

    def _moe_backends(self) -> list[type[MoEBackend]]:
        """The platform's own MoE backend classes (not instances), in any order.

        Called: when the model builds its MoE layers, after init_device (and by the conformance
        suite). The core adds those contributed through ``anyware_moe_backends``, orders all by
        ``priority`` and instantiates the highest-priority available one that accepts the
        layer's :class:`MoESpec` (``cls(platform, spec, communicator)``), unless one is named.
        Only consulted when ``Capabilities.moe`` is declared.

        May not: instantiate the backends or import heavy libraries at the platform module's
        import time. Default: none.
        """
        return []

    @abstractmethod
    def _communicator(self, rank: int, world_size: int) -> Communicator:
        """Build the communicator of ``rank`` in a group of ``world_size`` ranks.

        Called: after init_device and after the launcher initialised ``torch.distributed``
        (the core has checked ``world_size <= Capabilities.max_world_size``), and only when no
        extension contributes one (``anyware_communicators``).
        Returns: a :class:`Communicator` (usually ``TorchDistributedCommunicator``).
        May not: initialise or destroy the process group.
        """

    def _execution_strategy(self, kind: str) -> ExecutionStrategy:
        """A strategy for ``kind`` "graphs" or "compiled" (the core builds "eager" itself).

        Called: once, after init_device and model loading; only for a kind the capabilities
        declare (``graph_capture`` / ``compiled_execution``). ``self.config`` holds the sizes
        to capture for (``max_batch_size``, ``max_prefill_tokens``, ``extra``).
        Returns: a fresh :class:`ExecutionStrategy` whose ``kind`` is ``kind`` (anything else
        is a :class:`PluginError`); the core calls its ``setup`` later.
        May not: touch the device or capture/compile here: construction must be cheap, since
        configure also calls it to check that a declared kind exists (capture and
        compilation happen in ``ExecutionStrategy.setup``).
        Default: raises :class:`CapabilityError`.
        """
        raise CapabilityError(f"platform {self.name!r} has no {kind!r} execution strategy — "
                              "use --execution eager (or another --platform)")

    # ---------------------------------------------------------------- lifecycle tail
    def _model_loaded(self, model: torch.nn.Module) -> None:  # noqa: B027 - optional
        """React to the model being ready (e.g. repack weights for the platform's kernels).

        Called: once per model, after its weights are on the device and before the KV pool is
        allocated and graphs are captured; before the extensions' ``anyware_model_loaded``.
        May not: change the model's outputs (the conformance suite compares them with the
        reference) or keep references that outlive ``_shutdown``. Default: nothing.
        """

    def _shutdown(self) -> None:  # noqa: B027 - optional
        """Release device resources (graphs, workspaces, driver handles).

        Called: once, last, after the extensions' ``anyware_shutdown``. Must not raise for
        resources that were never created (the engine may shut down after a failed start).
        Default: nothing.
        """

    def _conformance_metadata(self) -> ConformanceMetadata:
        """Waivers and known failures the conformance suite applies to this platform.

        Called: by the conformance suite at collection time, before init_device. The core
        appends the extensions' ``anyware_conformance_metadata``. Default: none.
        """
        return ConformanceMetadata()
