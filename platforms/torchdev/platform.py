"""`TorchDevicePlatform`: the device hooks of a platform whose device is a torch device module
(``torch.cuda``, ``torch.xpu``, ``torch.npu``), and its graph-capture strategy.

A platform subclasses it, sets ``name``, ``device_type``, ``dist_backend`` (and
``device_module_import`` when an out-of-tree package registers the module, e.g.
``"torch_npu"``), and implements ``_probe``, ``_capabilities``, ``_create_ops``,
``_attention_backends`` and ``_communicator`` as for any platform. Declare
``graph_capture=cls.graph_capture_supported()`` so the capability follows the runtime.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
from types import ModuleType
from typing import ClassVar

import torch
from anyware.plugin import (
    CapabilityError,
    ExecutionStrategy,
    MemoryInfo,
    Platform,
    PlatformConfig,
)
from anyware_torchdev.graph_api import supports_graphs
from anyware_torchdev.probe import visible_device_count

DEFAULT_GRAPH_MAX_PREFILL = 2048
# verify graphs hold (k + 1) x the decode graphs' activations and logits; above this batch a
# verify step is no longer launch-bound enough to pay for the capture time and memory
DEFAULT_GRAPH_MAX_VERIFY_BS = 64


class TorchDevicePlatform(Platform):
    """Device hooks through ``torch.<device_type>``.

    device_module_import: a package to import before ``torch.<device_type>`` exists
        (``"torch_npu"``); ``None`` for modules built into torch.
    visible_devices_env: environment variables that hide all devices when set to ``""`` or
        ``"-1"`` (``CUDA_VISIBLE_DEVICES``, ...), honoured by :meth:`visible_device_count`.
    runtime_packages: distributions whose versions ``runtime_versions`` reports.
    runtime_version_attr: the ``torch.version`` attribute naming the device runtime
        (``"cuda"``, ``"hip"``, ``"xpu"``); ``None`` to report none.
    graph_unsafe_backends: attention backends (by name) that plan kernels from host-side
        lengths and so must not be captured: ``--execution graphs`` with one of them is a
        ``CapabilityError`` ending in ``graph_unsafe_hint`` (what to do instead).

    Graph options (``PlatformConfig.extra``, ``--platform-opt``), prefixed with the
    platform's ``name``: ``<name>_graph_batch_sizes`` (a list), ``<name>_graph_max_batch_size``
    (default ``max_batch_size``, and never above the program's ``max_requests``: the
    running-request cap; buckets every 8 rows up to 256, every 32 above), ``<name>_graph_max_prefill_tokens`` (default
    2048, capped at ``max_prefill_tokens``; 0 turns prefill graphs off),
    ``<name>_graph_max_verify_batch_size`` (default 64, capped at the largest decode bucket; 0
    turns verify graphs off). The strategies this platform builds (a target model's and a
    draft model's) share one graph memory pool and capture stream.
    """

    device_module_import: ClassVar[str | None] = None
    visible_devices_env: ClassVar[tuple[str, ...]] = ()
    runtime_packages: ClassVar[tuple[str, ...]] = ()
    runtime_version_attr: ClassVar[str | None] = None
    graph_unsafe_backends: ClassVar[frozenset[str]] = frozenset()
    graph_unsafe_hint: ClassVar[str] = "use --execution eager"

    def __init__(self) -> None:
        super().__init__()
        self._graph_pool = None  # one GraphPool for every graph strategy of this process

    # ---------------------------------------------------------------- the module
    @classmethod
    def device_module(cls) -> ModuleType:
        """``torch.<device_type>`` (importing ``device_module_import`` first)."""
        if cls.device_module_import:
            importlib.import_module(cls.device_module_import)
        module = getattr(torch, cls.device_type, None)
        if module is None:
            raise CapabilityError(f"torch {torch.__version__} has no torch.{cls.device_type} "
                                  f"module — install the {cls.name} build of torch")
        return module

    @classmethod
    def visible_device_count(cls) -> int:
        """Devices this process would see, without creating a device context."""
        return visible_device_count(cls.device_module(), cls.visible_devices_env)

    @classmethod
    def graph_capture_supported(cls) -> bool:
        """Whether the device module can capture graphs (what ``graph_capture`` declares)."""
        return supports_graphs(cls.device_module())

    def _default_execution(self) -> str:
        return "graphs" if self.graph_capture_supported() else "eager"

    def _configure(self, config: PlatformConfig) -> PlatformConfig:
        """Refuse ``--execution graphs`` with an attention backend named in
        ``graph_unsafe_backends`` (one that plans its kernels from host-side lengths, so a
        captured graph would replay stale plans); ``graph_unsafe_hint`` says what to do."""
        if config.execution == "graphs" and config.attention_backend in self.graph_unsafe_backends:
            raise CapabilityError(
                f"attention backend {config.attention_backend!r} cannot be captured into "
                f"{self.name} graphs (it plans kernels from host-side lengths) — "
                f"{self.graph_unsafe_hint}")
        return config

    # ---------------------------------------------------------------- device
    def _init_device(self, rank: int, local_rank: int) -> torch.device:
        module = self.device_module()
        count = module.device_count()
        if local_rank >= count:
            raise CapabilityError(f"local rank {local_rank} but only {count} "
                                  f"{self.device_type} device(s)")
        module.set_device(local_rank)
        return torch.device(self.device_type, local_rank)

    def device_count(self) -> int:
        return self.visible_device_count()

    def memory_info(self) -> MemoryInfo:
        """``mem_get_info`` of the device; where the module lacks it (older torch on some
        devices), total memory minus what this process's allocator has reserved."""
        module = self.device_module()
        if hasattr(module, "mem_get_info"):
            free, total = module.mem_get_info(self.device)
            return MemoryInfo(int(free), int(total))
        total = int(module.get_device_properties(self.device).total_memory)
        return MemoryInfo(total - int(module.memory_reserved(self.device)), total)

    def synchronize(self) -> None:
        self.device_module().synchronize(self.device)

    def empty_cache(self) -> None:
        self.device_module().empty_cache()

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)
        self.device_module().manual_seed_all(seed)

    def device_name(self) -> str:
        return self.device_module().get_device_name(self.device)

    def copy_to_host(self, tensor: torch.Tensor) -> torch.Tensor:
        """A non-blocking copy into pinned host memory; a blocking copy into pageable memory
        when this build cannot pin for the device (the values are then ready at once)."""
        if tensor.device.type == "cpu":
            return tensor.clone()
        try:
            out = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
        except RuntimeError:
            return tensor.to("cpu")
        out.copy_(tensor, non_blocking=True)
        return out

    def runtime_versions(self) -> dict[str, str]:
        versions = {"torch": torch.__version__}
        if self.runtime_version_attr:
            versions[self.runtime_version_attr] = str(
                getattr(torch.version, self.runtime_version_attr, None))
        if self.device_module_import:
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                dist = self.device_module_import.replace("_", "-")
                versions[dist] = importlib.metadata.version(dist)
        for dist in self.runtime_packages:
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                versions[dist] = importlib.metadata.version(dist)
        return versions

    # ---------------------------------------------------------------- execution
    def _execution_strategy(self, kind: str) -> ExecutionStrategy:
        if kind != "graphs":
            raise CapabilityError(f"platform {self.name!r} has no {kind!r} execution strategy "
                                  "— use --execution eager or graphs")
        from anyware_torchdev.graphs import GraphPool, TorchGraphExecution

        extra = self.config.extra if self.config else {}
        key = f"{self.name}_graph"
        sizes = extra.get(f"{key}_batch_sizes")
        # default: every request bucket up to max_batch_size (the running-request cap, or its
        # upper bound when the core sizes it from the KV pool: setup stops at the program's rows)
        max_bs = int(extra.get(f"{key}_max_batch_size",
                               self.config.max_batch_size if self.config else 256))
        # prefill graphs pay off while eager prefill is launch-bound (below ~2k tokens on an
        # 8B model); 0 turns them off
        chunk = self.config.max_prefill_tokens if self.config else DEFAULT_GRAPH_MAX_PREFILL
        max_prefill = min(chunk, int(extra.get(f"{key}_max_prefill_tokens",
                                               DEFAULT_GRAPH_MAX_PREFILL)))
        max_verify = int(extra.get(f"{key}_max_verify_batch_size", DEFAULT_GRAPH_MAX_VERIFY_BS))
        if self._graph_pool is None:
            self._graph_pool = GraphPool()
        return TorchGraphExecution(self.device_module(), tuple(sizes) if sizes else None,
                                   max_batch_size=max_bs, max_prefill_tokens=max_prefill,
                                   max_verify_batch_size=max_verify, pool=self._graph_pool)
