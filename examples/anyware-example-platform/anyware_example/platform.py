"""The ``example`` platform: the host CPU with the head-major attention backend as its default.

Everything but attention is the torch reference (``anyware.kernels.reference``), so the
conformance suite's verdict on this platform is a verdict on the HND backend and on the
plugin's packaging. It is available when selected by name only: it is an example, never the
platform auto-selection should pick.
"""

from __future__ import annotations

import os

import torch
from anyware.kernels.reference import ReferenceMoEBackend, ReferenceOps
from anyware.plugin import (
    COLLECTIVES,
    Capabilities,
    CompletedEvent,
    MemoryInfo,
    Platform,
    ProbeResult,
    TorchDistributedCommunicator,
)

KV_CAP_BYTES = 1 << 30  # host memory is shared with the rest of the machine


class ExamplePlatform(Platform):
    name = "example"
    device_type = "cpu"
    dist_backend = "gloo"
    priority = 0
    # written against plugin API 2.1 (KVLayout.head_major); loads on any 2.x from 2.1 on
    plugin_api_version = "2.1"
    description = "Example out-of-tree platform: host CPU, head-major (HND) paged attention"

    @classmethod
    def _probe(cls) -> ProbeResult:
        return ProbeResult.on_request("the anyware-example-platform example (host CPU); "
                                      "select it with --platform example")

    def _capabilities(self) -> Capabilities:
        return Capabilities(dtypes=frozenset({torch.float32, torch.bfloat16, torch.float16}),
                            collectives=frozenset(COLLECTIVES), max_world_size=8, moe=True)

    def _default_dtype(self) -> torch.dtype:
        return torch.float32

    def _init_device(self, rank: int, local_rank: int) -> torch.device:
        return torch.device("cpu")

    def device_count(self) -> int:
        return 1

    def memory_info(self) -> MemoryInfo:
        page = os.sysconf("SC_PAGE_SIZE")
        return MemoryInfo(page * os.sysconf("SC_AVPHYS_PAGES"), page * os.sysconf("SC_PHYS_PAGES"))

    def synchronize(self) -> None:
        pass  # torch CPU ops finish before they return

    def kv_cache_budget(self, mem_fraction: float, reserve_bytes: int) -> int:
        return min(int(self.memory_info().free_bytes * mem_fraction), KV_CAP_BYTES)

    def record_event(self) -> CompletedEvent:
        return CompletedEvent()

    def copy_to_host(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.clone()

    def _create_ops(self) -> ReferenceOps:
        return ReferenceOps()

    def _attention_backends(self):
        from anyware_example.hnd_attention import HndAttentionBackend

        return [HndAttentionBackend]

    def _moe_backends(self):
        return [ReferenceMoEBackend]

    def _communicator(self, rank: int, world_size: int):
        return TorchDistributedCommunicator(rank, world_size)
