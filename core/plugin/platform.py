"""The `Platform` base class: what every platform plugin implements.

Template-method style: the public methods validate arguments, translate errors into named
exceptions and call narrow ``_hooks`` that a plugin overrides. Lifecycle, per process:
``probe`` (class method, cheap, no side effects) -> ``configure`` -> ``init_device`` (per rank)
-> ``model_loaded`` -> ``shutdown``. Extension plugins take part through the pluggy hooks of
:mod:`anyware.plugin.hookspecs`, relayed by ``self.hooks``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch
from anyware.plugin.capabilities import AttentionFeatures, Capabilities
from anyware.plugin.conformance import ConformanceMetadata
from anyware.plugin.errors import CapabilityError, DeviceError, PluginError
from anyware.plugin.events import CompletedEvent, DeviceEvent
from anyware.plugin.execution import EagerExecution, ExecutionStrategy
from anyware.plugin.ops.attention import AttentionBackend, AttentionSpec
from anyware.plugin.ops.comm import Communicator
from anyware.plugin.ops.kernels import KernelOps
from anyware.plugin.ops.moe import MoEExperts, TokenDispatcher

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
        return cls(True, reason)

    @classmethod
    def on_request(cls, reason: str) -> ProbeResult:
        """Available when selected by name only (``reason`` says what it runs on)."""
        return cls(True, reason, explicit_only=True)

    @classmethod
    def no(cls, reason: str) -> ProbeResult:
        return cls(False, reason)


@dataclass(frozen=True)
class MemoryInfo:
    free_bytes: int
    total_bytes: int


@dataclass(frozen=True)
class PlatformConfig:
    """What the engine asks of a platform; ``configure`` fills defaults and validates.

    dtype / kv_cache_dtype: ``None`` lets the platform choose.
    page_size: ``None`` lets the attention backend choose its first declared size.
    execution: "auto", "eager", "graphs" or "compiled".
    attention_backend: a backend name, or ``None`` for the highest-priority available one.
    attention_features: features the model/engine will use (sliding window, soft-cap, ...).
    max_batch_size: the most requests one forward will carry (graph buckets stop there).
    max_prefill_tokens: the most new tokens one forward will carry (the chunked-prefill size;
        prefill graph buckets stop there).
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


class Platform(ABC):
    """Base class of platform plugins.

    Class attributes: ``name`` (what ``--platform`` takes), ``device_type`` (torch device
    type), ``dist_backend`` (torch.distributed backend), ``priority`` (higher wins when several
    are available), ``plugin_api_version`` (the contract version the plugin targets).
    """

    name: ClassVar[str]
    device_type: ClassVar[str]
    dist_backend: ClassVar[str]
    priority: ClassVar[int] = 0
    plugin_api_version: ClassVar[str]
    description: ClassVar[str] = ""

    def __init__(self) -> None:
        self.hooks: Any = None  # pluggy hook relay, set by discovery
        self.config: PlatformConfig | None = None
        self.rank = 0
        self._device: torch.device | None = None
        self._caps: Capabilities | None = None
        self._ops: KernelOps | None = None

    # ---------------------------------------------------------------- probe
    @classmethod
    def probe(cls) -> ProbeResult:
        """Cheap, side-effect-free availability check. Never raises."""
        try:
            result = cls._probe()
        except Exception as exc:  # a probe must never take the others down
            return ProbeResult.no(f"probe raised {type(exc).__name__}: {exc}")
        if not isinstance(result, ProbeResult):
            return ProbeResult.no(f"probe returned {type(result).__name__}, not ProbeResult")
        return result

    @classmethod
    @abstractmethod
    def _probe(cls) -> ProbeResult:
        """Plugin hook: decide availability without importing vendor libraries eagerly
        (``importlib.util.find_spec`` is fine) and without initialising a device."""

    # ---------------------------------------------------------------- capabilities
    def capabilities(self) -> Capabilities:
        if self._caps is None:
            caps = self._capabilities()
            if not isinstance(caps, Capabilities):
                raise PluginError(f"platform {self.name!r} returned no Capabilities")
            self._caps = caps
        return self._caps

    @abstractmethod
    def _capabilities(self) -> Capabilities:
        """Plugin hook: the declared capabilities."""

    # ---------------------------------------------------------------- configure
    def configure(self, config: PlatformConfig) -> PlatformConfig:
        """Fill defaults, validate ``config`` against the capabilities, and return it.

        Raises :class:`CapabilityError` naming what is missing; never falls back silently.
        """
        caps = self.capabilities()
        dtype = config.dtype or self._default_dtype()
        kv_dtype = config.kv_cache_dtype or dtype
        execution = config.execution
        if execution == "auto":
            execution = self._default_execution()
        problems = []
        if dtype not in caps.dtypes:
            problems.append(f"dtype {dtype} (supported: {sorted(map(str, caps.dtypes))})")
        if kv_dtype not in caps.kv_cache_dtypes:
            problems.append(f"KV-cache dtype {kv_dtype} "
                            f"(supported: {sorted(map(str, caps.kv_cache_dtypes))})")
        if config.attention_backend is not None:
            names = [b.name for b in self.attention_backends()]
            if config.attention_backend not in names:
                problems.append(f"attention backend {config.attention_backend!r} (known: {names})")
        if config.page_size is not None and config.page_size not in caps.page_sizes:
            problems.append(f"page size {config.page_size} (supported: {caps.page_sizes})")
        if config.world_size > caps.max_world_size:
            problems.append(f"world size {config.world_size} (max {caps.max_world_size})")
        if execution not in EXECUTION_KINDS:
            problems.append(f"execution {execution!r} (one of {EXECUTION_KINDS})")
        elif execution == "graphs" and not caps.graph_capture:
            problems.append("execution 'graphs' (no graph capture)")
        elif execution == "compiled" and not caps.compiled_execution:
            problems.append("execution 'compiled' (no compiled execution)")
        missing = caps.attention.missing(config.attention_features)
        if missing:
            problems.append(f"attention features {', '.join(missing)}")
        if problems:
            raise CapabilityError(
                f"platform {self.name!r} does not support: " + "; ".join(problems)
                + ". Choose another setting or another --platform (see `anyware platforms`)."
            )
        config = replace(
            config,
            dtype=dtype,
            kv_cache_dtype=kv_dtype,
            page_size=config.page_size or caps.page_sizes[0],
            execution=execution,
        )
        config = self._configure(config)
        if self.hooks is not None:
            self.hooks.anyware_configure(platform=self, config=config)
        self.config = config
        return config

    def _configure(self, config: PlatformConfig) -> PlatformConfig:
        """Plugin hook: adjust or reject a validated config."""
        return config

    def _default_dtype(self) -> torch.dtype:
        return torch.bfloat16

    def _default_execution(self) -> str:
        return "eager"

    # ---------------------------------------------------------------- device
    def init_device(self, rank: int = 0, local_rank: int | None = None) -> torch.device:
        """Select and initialise this rank's device; returns it."""
        self.rank = rank
        try:
            self._device = self._init_device(rank, rank if local_rank is None else local_rank)
        except Exception as exc:
            raise DeviceError(f"platform {self.name!r} could not initialise its device: {exc}") from exc
        if self.hooks is not None:
            self.hooks.anyware_init_device(platform=self, rank=rank)
        return self._device

    @abstractmethod
    def _init_device(self, rank: int, local_rank: int) -> torch.device:
        """Plugin hook: set the device for this process and return it."""

    @property
    def device(self) -> torch.device:
        if self._device is None:
            raise DeviceError(f"platform {self.name!r}: init_device() has not been called")
        return self._device

    @abstractmethod
    def device_count(self) -> int:
        """Devices visible to this process."""

    @abstractmethod
    def memory_info(self) -> MemoryInfo:
        """Free and total bytes of this rank's device memory."""

    @abstractmethod
    def synchronize(self) -> None:
        """Wait for all queued device work."""

    def kv_cache_budget(self, mem_fraction: float, reserve_bytes: int) -> int:
        """Bytes the engine may give the KV cache when the user set no explicit size:
        ``mem_fraction`` of the free device memory minus ``reserve_bytes`` (the engine's
        estimate of its largest step's activations). Override where the device memory is
        shared with the rest of the system (the CPU caps it)."""
        return int(self.memory_info().free_bytes * mem_fraction) - reserve_bytes

    def record_event(self) -> DeviceEvent:
        """An event after the work queued so far on the current stream. Default:
        ``torch.Event`` for the device type; host devices (and other synchronous platforms)
        return a :class:`~anyware.plugin.events.CompletedEvent`."""
        if self.device.type == "cpu":
            return CompletedEvent()
        event = torch.Event(device=self.device)
        event.record()
        return event

    def copy_to_host(self, tensor: torch.Tensor) -> torch.Tensor:
        """Start copying a device tensor to host memory without waiting for the device. The
        returned host tensor holds the values once an event recorded after this call has
        completed. Default: a pinned buffer and a non-blocking copy (a copy for host tensors)."""
        if tensor.device.type == "cpu":
            return tensor.clone()
        out = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
        out.copy_(tensor, non_blocking=True)
        return out

    def empty_cache(self) -> None:  # noqa: B027 - optional
        """Return cached allocator blocks to the device."""

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def device_name(self) -> str:
        """Human-readable device model (reports)."""
        return self.device_type

    def runtime_versions(self) -> dict[str, str]:
        """Driver/runtime/library versions for reports."""
        return {"torch": torch.__version__}

    def allocate(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """Allocate a zero-filled device tensor (the KV pool uses this)."""
        try:
            return torch.zeros(shape, dtype=dtype, device=self.device)
        except RuntimeError as exc:
            raise DeviceError(f"could not allocate {shape} {dtype} on {self.device}: {exc}") from exc

    # ---------------------------------------------------------------- ops
    def ops(self) -> KernelOps:
        if self._ops is None:
            self._ops = self._create_ops()
        return self._ops

    @abstractmethod
    def _create_ops(self) -> KernelOps:
        """Plugin hook: the platform's norm/rotary/activation/KV/sampling kernels."""

    def attention_backends(self) -> list[type[AttentionBackend]]:
        """The platform's own backends plus those contributed by extension plugins,
        highest priority first."""
        found = list(self._attention_backends())
        if self.hooks is not None:
            for contributed in self.hooks.anyware_attention_backends(platform=self):
                found.extend(contributed or ())
        return sorted(found, key=lambda b: -b.priority)

    @abstractmethod
    def _attention_backends(self) -> list[type[AttentionBackend]]:
        """Plugin hook: the platform's own attention backends."""

    def attention_backend(self, spec: AttentionSpec, name: str | None = None) -> AttentionBackend:
        """Instantiate the named backend, or the highest-priority available one that supports
        ``spec.dtype`` (a named backend is never skipped: its own checks explain a mismatch)."""
        name = name or (self.config.attention_backend if self.config else None)
        backends = self.attention_backends()
        reasons = []
        for cls in backends:
            if name is not None and cls.name != name:
                continue
            if name is None and spec.dtype not in cls.kv_dtypes:
                # priority picks among the backends that compute in the model's dtype
                reasons.append(f"{cls.name}: no {spec.dtype} support")
                continue
            ok, why = cls.is_available(self)
            if ok:
                return cls(self, spec)
            reasons.append(f"{cls.name}: {why}")
        known = ", ".join(b.name for b in backends) or "none"
        if name is not None and not reasons:
            raise CapabilityError(f"platform {self.name!r} has no attention backend {name!r} (known: {known})")
        raise CapabilityError(f"no usable attention backend on {self.name!r}: {'; '.join(reasons) or known}")

    def moe_experts(self) -> MoEExperts:
        """The highest-priority contributed MoE experts, else the platform's own."""
        contributed = self._contributed("anyware_moe_backends")
        if contributed:
            return contributed[0]()
        return self._moe_experts()

    def _moe_experts(self) -> MoEExperts:
        raise CapabilityError(f"platform {self.name!r} provides no MoE experts")

    def _contributed(self, hook_name: str) -> list:
        """Classes contributed by extension plugins through ``hook_name``, best first."""
        found: list = []
        if self.hooks is not None:
            for items in getattr(self.hooks, hook_name)(platform=self):
                found.extend(items or ())
        return sorted(found, key=lambda c: -getattr(c, "priority", 0))

    def token_dispatcher(self, num_experts: int, ep_rank: int = 0, ep_size: int = 1) -> TokenDispatcher:
        """The highest-priority contributed dispatcher, else the platform's own."""
        contributed = self._contributed("anyware_token_dispatchers")
        if contributed:
            return contributed[0](num_experts, ep_rank, ep_size)
        return self._token_dispatcher(num_experts, ep_rank, ep_size)

    def _token_dispatcher(self, num_experts: int, ep_rank: int, ep_size: int) -> TokenDispatcher:
        raise CapabilityError(f"platform {self.name!r} provides no token dispatcher")

    def communicator(self, rank: int, world_size: int) -> Communicator:
        """A communicator over the initialised default process group (the highest-priority
        contributed one, else the platform's own)."""
        if world_size > self.capabilities().max_world_size:
            raise CapabilityError(f"platform {self.name!r} supports world size <= "
                                  f"{self.capabilities().max_world_size}, not {world_size}")
        contributed = self._contributed("anyware_communicators")
        if contributed:
            return contributed[0](rank, world_size)
        return self._communicator(rank, world_size)

    @abstractmethod
    def _communicator(self, rank: int, world_size: int) -> Communicator:
        """Plugin hook: build the communicator (usually TorchDistributedCommunicator)."""

    def execution_strategy(self, kind: str | None = None) -> ExecutionStrategy:
        """The strategy for ``kind`` (default: the configured one)."""
        kind = kind or (self.config.execution if self.config else "eager")
        if kind == "eager":
            return EagerExecution()
        return self._execution_strategy(kind)

    def _execution_strategy(self, kind: str) -> ExecutionStrategy:
        raise CapabilityError(f"platform {self.name!r} has no {kind!r} execution strategy")

    # ---------------------------------------------------------------- lifecycle tail
    def model_loaded(self, model: torch.nn.Module) -> None:
        """Called once the model's weights are on the device."""
        self._model_loaded(model)
        if self.hooks is not None:
            self.hooks.anyware_model_loaded(platform=self, model=model)

    def _model_loaded(self, model: torch.nn.Module) -> None:  # noqa: B027 - optional
        """Plugin hook: e.g. repack weights for the platform's kernels."""

    def shutdown(self) -> None:
        if self.hooks is not None:
            self.hooks.anyware_shutdown(platform=self)
        self._shutdown()

    def _shutdown(self) -> None:  # noqa: B027 - optional
        """Plugin hook: release device resources."""

    def conformance_metadata(self) -> ConformanceMetadata:
        """Waivers and known failures the conformance suite applies to this platform."""
        meta = self._conformance_metadata()
        if self.hooks is not None:
            extra = [m for m in self.hooks.anyware_conformance_metadata(platform=self) if m]
            for m in extra:
                meta = ConformanceMetadata(
                    waivers=meta.waivers + m.waivers,
                    known_failures=meta.known_failures + m.known_failures,
                )
        return meta

    def _conformance_metadata(self) -> ConformanceMetadata:
        return ConformanceMetadata()
