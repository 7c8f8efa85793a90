"""The CPU reference platform: torch reference ops, the reference attention backend, gloo."""

from __future__ import annotations

import os

import torch
from anyware.kernels.reference import (
    ReferenceAttentionBackend,
    ReferenceMoEBackend,
    ReferenceOps,
)
from anyware.plugin import (
    COLLECTIVES,
    PLUGIN_API_VERSION,
    Capabilities,
    CompletedEvent,
    MemoryInfo,
    Platform,
    ProbeResult,
    TorchDistributedCommunicator,
)


def _meminfo() -> tuple[int, int]:
    """(available, total) bytes of host memory from /proc/meminfo, else os.sysconf."""
    try:
        with open("/proc/meminfo") as f:
            fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
        return fields.get("MemAvailable", fields["MemFree"]), fields["MemTotal"]
    except (OSError, KeyError, ValueError):
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return total // 2, total


DEFAULT_KV_BYTES = 1 << 30


class CpuPlatform(Platform):
    name = "cpu"
    device_type = "cpu"
    dist_backend = "gloo"
    priority = 0
    plugin_api_version = PLUGIN_API_VERSION
    description = "Plain torch on the host CPU; the reference platform"

    @classmethod
    def _probe(cls) -> ProbeResult:
        return ProbeResult.yes("always available")

    def _capabilities(self) -> Capabilities:
        # KV dtypes, page sizes and attention features are ReferenceAttentionBackend's
        return Capabilities(
            dtypes=frozenset({torch.float32, torch.bfloat16, torch.float16}),
            graph_capture=False,
            compiled_execution=False,
            collectives=frozenset(COLLECTIVES),
            max_world_size=64,
            moe=True,
            quantization=frozenset({"fp8"}),  # ReferenceOps.fp8_linear (fp32 on the host)
        )

    def _default_dtype(self) -> torch.dtype:
        return torch.float32

    def _init_device(self, rank: int, local_rank: int) -> torch.device:
        return torch.device("cpu")

    def device_count(self) -> int:
        return 1

    def memory_info(self) -> MemoryInfo:
        free, total = _meminfo()
        return MemoryInfo(free, total)

    def synchronize(self) -> None:
        pass

    def kv_cache_budget(self, mem_fraction: float, reserve_bytes: int) -> int:
        # host memory is shared with everything else on the machine: 1 GiB unless asked
        return min(int(self.memory_info().free_bytes * mem_fraction), DEFAULT_KV_BYTES)

    def record_event(self) -> CompletedEvent:
        return CompletedEvent()  # torch CPU ops finish before they return

    def copy_to_host(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.clone()

    def device_name(self) -> str:
        import platform

        return platform.processor() or platform.machine() or "cpu"

    def _create_ops(self) -> ReferenceOps:
        return ReferenceOps()

    def _attention_backends(self):
        return [ReferenceAttentionBackend]

    def _moe_backends(self):
        return [ReferenceMoEBackend]

    def _communicator(self, rank, world_size):
        return TorchDistributedCommunicator(rank, world_size)
