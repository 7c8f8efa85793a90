"""The Intel XPU platform: stock ``torch.xpu`` (no IPEX), XCCL, attention through torch SDPA
on a paged cache, vllm-xpu-kernels' paged flash attention where it loads, the portable
Triton kernels only where Intel's Triton backend is installed.

* Device, memory, streams and events: ``torch.xpu`` (present in every torch >= 2.5).
* Collectives: ``xccl`` (torch >= 2.8 built with XCCL; ``torch.distributed.is_xccl_available``).
* Ops: ``TritonOps`` when Intel's Triton backend (pytorch-triton-xpu) is installed, else the
  torch ops (``ReferenceOps`` running on the XPU device).
* IPEX is not used: intel-extension-for-pytorch stopped after 2.8 and aborts at import under
  any other torch.
"""

from __future__ import annotations

import contextlib
import importlib.metadata

import torch
from anyware.kernels.reference import ReferenceMoEBackend
from anyware.plugin import (
    COLLECTIVES,
    PLUGIN_API_VERSION,
    Capabilities,
    CapabilityError,
    MemoryInfo,
    Platform,
    ProbeResult,
    TorchDistributedCommunicator,
)
from anyware_xpu.probe import (
    intel_triton_problem,
    visible_device_count,
    xpu_kernels_problem,
    xpu_problem,
)


def xccl_available() -> bool:
    import torch.distributed as dist

    check = getattr(dist, "is_xccl_available", None)
    try:
        return bool(check and check())
    except Exception:
        return False


class XpuPlatform(Platform):
    name = "xpu"
    device_type = "xpu"
    dist_backend = "xccl"
    priority = 90
    plugin_api_version = PLUGIN_API_VERSION
    description = "Intel GPUs through stock torch.xpu: SDPA paged attention, vllm-xpu-kernels when installed, XCCL"

    @classmethod
    def _probe(cls) -> ProbeResult:
        problem = xpu_problem()
        if problem:
            return ProbeResult.no(problem)
        notes = [f"{visible_device_count()} Intel GPU(s)"]
        notes.append(xpu_kernels_problem() or "vllm-xpu-kernels installed")
        notes.append(intel_triton_problem() or "Intel Triton backend installed")
        return ProbeResult.yes("; ".join(notes))

    def _capabilities(self) -> Capabilities:
        # KV dtypes, page sizes and attention features are the selected backend's
        # (vllm-xpu-kernels where it imports, else the paged SDPA backend)
        return Capabilities(
            dtypes=frozenset({torch.bfloat16, torch.float16, torch.float32}),
            graph_capture=False,
            compiled_execution=False,
            collectives=frozenset(COLLECTIVES),
            max_world_size=max(1, visible_device_count()) if xccl_available() else 1,
            moe=True,
            async_execution=True,
        )

    # ---------------------------------------------------------------- device
    def _init_device(self, rank: int, local_rank: int) -> torch.device:
        count = torch.xpu.device_count()
        if local_rank >= count:
            raise CapabilityError(f"local rank {local_rank} but only {count} XPU device(s)")
        torch.xpu.set_device(local_rank)
        return torch.device("xpu", local_rank)

    def device_count(self) -> int:
        return visible_device_count()

    def memory_info(self) -> MemoryInfo:
        free, total = torch.xpu.mem_get_info(self.device)
        return MemoryInfo(int(free), int(total))

    def synchronize(self) -> None:
        torch.xpu.synchronize(self.device)

    def empty_cache(self) -> None:
        torch.xpu.empty_cache()

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)
        torch.xpu.manual_seed_all(seed)

    def device_name(self) -> str:
        return torch.xpu.get_device_name(self.device)

    def runtime_versions(self) -> dict[str, str]:
        versions = {"torch": torch.__version__, "xpu": str(getattr(torch.version, "xpu", None))}
        for dist in ("pytorch-triton-xpu", "vllm-xpu-kernels"):
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                versions[dist] = importlib.metadata.version(dist)
        return versions

    # ---------------------------------------------------------------- ops
    def _create_ops(self):
        if intel_triton_problem() is None:
            from anyware.kernels.triton.ops import TritonOps

            return TritonOps()
        from anyware.kernels.reference import ReferenceOps

        ops = ReferenceOps()
        ops.provider = "torch-xpu"
        return ops

    def _attention_backends(self):
        from anyware_xpu.sdpa_backend import PagedSDPAAttentionBackend
        from anyware_xpu.xpu_kernels_backend import XpuFlashAttentionBackend

        backends = [XpuFlashAttentionBackend, PagedSDPAAttentionBackend]
        if intel_triton_problem() is None:
            from anyware.kernels.triton.attention_backend import TritonAttentionBackend

            backends.append(TritonAttentionBackend)
        return backends

    def _moe_backends(self):
        if intel_triton_problem() is None:
            from anyware.kernels.triton.moe_backend import TritonMoEBackend

            return [TritonMoEBackend]
        return [ReferenceMoEBackend]

    def _communicator(self, rank, world_size):
        if world_size > 1 and not xccl_available():
            raise CapabilityError("torch.distributed has no XCCL backend (torch >= 2.8 XPU build "
                                  "needed for more than one rank)")
        return TorchDistributedCommunicator(rank, world_size)
