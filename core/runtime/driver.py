"""`PlatformDriver`: how the core drives the selected platform plugin.

The driver wraps one :class:`~anyware.plugin.Platform` instance and the extension hook relay.
It calls the plugin's hooks in lifecycle order (rule 11), checks configurations against the
declared capabilities (rule 6), merges extension contributions (rule 7) and turns failures
into named exceptions that name the platform. The engine, the CLI and the conformance suite
hold a driver; attention backends, strategies and extension hooks receive the plugin instance
(``driver.platform``).
"""

from __future__ import annotations

from typing import Any

import torch
from anyware.plugin import (
    AttentionBackend,
    AttentionSpec,
    Capabilities,
    CapabilityError,
    Communicator,
    ConformanceMetadata,
    DeviceError,
    DeviceEvent,
    EagerExecution,
    ExecutionStrategy,
    KernelOps,
    MemoryInfo,
    MoEBackend,
    MoESpec,
    Platform,
    PlatformConfig,
    PluginError,
)
from anyware.runtime.capabilities import EffectiveCapabilities
from anyware.runtime.contributions import Contributions
from anyware.runtime.validation import pick_attention_backend, resolve_config


class PlatformDriver:
    """The selected platform as the core sees it: lifecycle, checks, contributions.

    Lifecycle per process: ``configure`` -> ``init_device`` -> (ops, attention backend, KV
    allocation, execution strategy) -> ``model_loaded`` -> ``shutdown``. Build one with
    :func:`anyware.runtime.load_platform`, or ``PlatformDriver(platform)`` for an instance
    without extensions.
    """

    def __init__(self, platform: Platform, hooks: Any = None) -> None:
        self.platform = platform
        self.contributions = Contributions(platform, hooks)
        self._declared: Capabilities | None = None
        self._effective: dict[str, EffectiveCapabilities] = {}

    def __repr__(self) -> str:
        return f"PlatformDriver({type(self.platform).__name__} {self.name!r})"

    # ---------------------------------------------------------------- identity
    @property
    def name(self) -> str:
        return self.platform.name

    @property
    def device_type(self) -> str:
        return self.platform.device_type

    @property
    def dist_backend(self) -> str:
        return self.platform.dist_backend

    @property
    def hooks(self) -> Any:
        """The extension hook relay (``None`` without extensions)."""
        return self.contributions.hooks

    @property
    def config(self) -> PlatformConfig | None:
        """The configuration ``configure`` returned (``None`` before)."""
        return self.platform.config

    @property
    def rank(self) -> int:
        return self.platform.rank

    @property
    def device(self) -> torch.device:
        """This rank's device; raises :class:`DeviceError` before ``init_device``."""
        return self.platform.device

    # ---------------------------------------------------------------- capabilities
    def declared_capabilities(self) -> Capabilities:
        """The platform's own declaration (cached). Raises :class:`PluginError` for a
        malformed one."""
        if self._declared is None:
            caps = self.platform._capabilities()
            if not isinstance(caps, Capabilities):
                raise PluginError(f"platform {self.name!r} returned {type(caps).__name__} from "
                                  "_capabilities(), not Capabilities")
            self._declared = caps
        return self._declared

    def default_attention_backend(self) -> type[AttentionBackend]:
        """The configured backend, else the highest-priority available one (own or
        contributed). Raises :class:`CapabilityError` when there is none."""
        backends = self.attention_backends()
        name = self.config.attention_backend if self.config else None
        cls, reasons = pick_attention_backend(self.platform, backends, name)
        if cls is None:
            known = ", ".join(b.name for b in backends) or "none"
            raise CapabilityError(f"no usable attention backend on {self.name!r}: "
                                  f"{'; '.join(reasons) or known}")
        return cls

    def capabilities(self) -> EffectiveCapabilities:
        """The declaration combined with the attention backend's (the configured one, else the
        default): dtypes and device facts from the platform, KV dtypes, page sizes and
        attention features from the backend."""
        backend = self.default_attention_backend()
        key = f"{backend.__module__}.{backend.__qualname__}"
        if key not in self._effective:
            self._effective[key] = EffectiveCapabilities.derive(self.declared_capabilities(), backend)
        return self._effective[key]

    # ---------------------------------------------------------------- configure
    def configure(self, config: PlatformConfig) -> PlatformConfig:
        """Fill defaults, validate ``config`` against the capabilities, let the platform and
        the extensions adjust or reject it, and return it (also as ``self.config``).

        Raises :class:`CapabilityError` naming every unsupported setting; never falls back
        silently and applies nothing on failure.
        """
        resolved, _ = resolve_config(self.platform, self.declared_capabilities(),
                                     self.attention_backends(), config)
        resolved = self.platform._configure(resolved)
        if not isinstance(resolved, PlatformConfig):
            raise PluginError(f"platform {self.name!r}: _configure returned "
                              f"{type(resolved).__name__}, not PlatformConfig")
        self.contributions.call("anyware_configure", config=resolved)
        self.platform.config = resolved
        if resolved.execution != "eager":
            # a declared kind must exist now, not fail later at engine start
            try:
                self.execution_strategy(resolved.execution)
            except Exception:
                self.platform.config = None
                raise
        return resolved

    # ---------------------------------------------------------------- device
    def init_device(self, rank: int = 0, local_rank: int | None = None) -> torch.device:
        """Select and initialise this rank's device (``local_rank`` defaults to ``rank``);
        returns it. Raises :class:`DeviceError` naming the platform."""
        self.platform.rank = rank
        try:
            device = self.platform._init_device(rank, rank if local_rank is None else local_rank)
        except Exception as exc:
            raise DeviceError(f"platform {self.name!r} could not initialise its device: {exc}") from exc
        self.platform.device = device
        self.contributions.call("anyware_init_device", rank=rank)
        return device

    def device_count(self) -> int:
        return self.platform.device_count()

    def memory_info(self) -> MemoryInfo:
        return self.platform.memory_info()

    def synchronize(self) -> None:
        self.platform.synchronize()

    def kv_cache_budget(self, mem_fraction: float, reserve_bytes: int) -> int:
        return self.platform.kv_cache_budget(mem_fraction, reserve_bytes)

    def record_event(self) -> DeviceEvent:
        return self.platform.record_event()

    def copy_to_host(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.platform.copy_to_host(tensor)

    def empty_cache(self) -> None:
        self.platform.empty_cache()

    def manual_seed(self, seed: int) -> None:
        self.platform.manual_seed(seed)

    def device_name(self) -> str:
        return self.platform.device_name()

    def runtime_versions(self) -> dict[str, str]:
        return self.platform.runtime_versions()

    def allocate(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """A zero-filled device tensor (the KV pool uses this). Raises :class:`DeviceError`."""
        try:
            return self.platform.allocate(shape, dtype)
        except DeviceError:
            raise
        except Exception as exc:
            raise DeviceError(f"could not allocate {shape} {dtype} on platform {self.name!r}: "
                              f"{exc}") from exc

    # ---------------------------------------------------------------- ops
    def ops(self) -> KernelOps:
        """The platform's kernels (built once, shared with its backends)."""
        ops = self.platform.ops()
        if not isinstance(ops, KernelOps):
            raise PluginError(f"platform {self.name!r}: _create_ops returned "
                              f"{type(ops).__name__}, not KernelOps")
        return ops

    def attention_backends(self) -> list[type[AttentionBackend]]:
        """The platform's own backends plus those contributed by extension plugins, highest
        priority first."""
        return self.contributions.attention_backends()

    def attention_backend(self, spec: AttentionSpec, name: str | None = None) -> AttentionBackend:
        """Instantiate the named backend (default: the configured one), or the highest-priority
        available one that supports ``spec.dtype``. Raises :class:`CapabilityError`."""
        name = name or (self.config.attention_backend if self.config else None)
        backends = self.attention_backends()
        cls, reasons = pick_attention_backend(self.platform, backends, name, spec.dtype)
        if cls is not None:
            return cls(self.platform, spec)
        known = ", ".join(b.name for b in backends) or "none"
        if name is not None and not reasons:
            raise CapabilityError(f"platform {self.name!r} has no attention backend {name!r} (known: {known})")
        raise CapabilityError(f"no usable attention backend on {self.name!r}: {'; '.join(reasons) or known}")

    def moe_backends(self) -> list[type[MoEBackend]]:
        """The platform's own MoE backends plus those contributed through
        ``anyware_moe_backends``, highest priority first."""
        return self.contributions.moe_backends()

    def moe_backend(self, spec: MoESpec, communicator: Communicator | None = None,
                    name: str | None = None) -> MoEBackend:
        """Instantiate the named MoE backend, or the highest-priority available one that
        accepts ``spec`` (a named backend is never skipped: its own checks explain a mismatch).
        Raises :class:`CapabilityError` naming why each candidate was passed over."""
        if not self.declared_capabilities().moe:
            raise CapabilityError(f"platform {self.name!r} does not declare MoE support")
        backends = self.moe_backends()
        reasons = []
        for cls in backends:
            if name is not None and cls.name != name:
                continue
            ok, why = cls.is_available(self.platform)
            why = why if not ok else cls.unsupported(spec)
            if why is None and spec.quantization is not None \
                    and spec.quantization not in getattr(cls, "quantizations", ()):
                # also for a backend whose own ``unsupported`` predates MoESpec.quantization
                why = f"no {spec.quantization} experts"
            if why is None:
                return cls(self.platform, spec, communicator)
            reasons.append(f"{cls.name}: {why}")
        known = ", ".join(b.name for b in backends) or "none"
        if name is not None and not reasons:
            raise CapabilityError(f"platform {self.name!r} has no MoE backend {name!r} (known: {known})")
        raise CapabilityError(f"no usable MoE backend on {self.name!r} for {spec}: "
                              f"{'; '.join(reasons) or 'none provided'}")

    def communicator(self, rank: int, world_size: int) -> Communicator:
        """A communicator over the initialised default process group (the highest-priority
        contributed one, else the platform's own)."""
        limit = self.declared_capabilities().max_world_size
        if world_size > limit:
            raise CapabilityError(f"platform {self.name!r} supports world size <= {limit}, "
                                  f"not {world_size}")
        contributed = self.contributions.classes("anyware_communicators")
        if contributed:
            return contributed[0](rank, world_size)
        return self.platform._communicator(rank, world_size)

    def execution_strategy(self, kind: str | None = None) -> ExecutionStrategy:
        """A fresh strategy for ``kind`` (default: the configured one, else eager). Raises
        :class:`CapabilityError` for a kind the platform does not declare or build, and
        :class:`PluginError` when the platform returns a strategy of another kind."""
        kind = kind or (self.config.execution if self.config else "eager")
        if kind == "eager":
            return EagerExecution()
        declared = self.declared_capabilities()
        if (kind == "graphs" and not declared.graph_capture) or (
                kind == "compiled" and not declared.compiled_execution):
            raise CapabilityError(f"platform {self.name!r} does not declare {kind!r} execution")
        strategy = self.platform._execution_strategy(kind)
        if getattr(strategy, "kind", None) != kind:
            raise PluginError(f"platform {self.name!r} returned a "
                              f"{getattr(strategy, 'kind', type(strategy).__name__)!r} strategy "
                              f"for execution {kind!r}; it must return one of kind {kind!r}")
        return strategy

    # ---------------------------------------------------------------- lifecycle tail
    def model_loaded(self, model: torch.nn.Module) -> None:
        """Tell the platform, then the extensions, that the model's weights are on the device."""
        self.platform._model_loaded(model)
        self.contributions.call("anyware_model_loaded", model=model)

    def shutdown(self) -> None:
        """Extensions first, then the platform release their resources."""
        self.contributions.call("anyware_shutdown")
        self.platform._shutdown()

    def conformance_metadata(self) -> ConformanceMetadata:
        """Waivers and known failures the conformance suite applies to this platform."""
        return self.contributions.conformance_metadata()
