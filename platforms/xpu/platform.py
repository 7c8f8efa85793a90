"""The Intel XPU platform: stock ``torch.xpu`` (no IPEX), XCCL, attention through torch SDPA
on a paged cache, vllm-xpu-kernels' paged flash attention where it loads, the portable
Triton kernels only where Intel's Triton backend is installed.

* Device, memory, streams and events: ``torch.xpu`` (present in every torch >= 2.5), through
  the torch-device toolkit (:class:`anyware_torchdev.TorchDevicePlatform`).
* Graphs: declared where ``torch.xpu`` has ``XPUGraph`` (recent torch), with the toolkit's
  ``graphs`` strategy (options ``xpu_graph_*``). The SDPA and vllm-xpu-kernels backends plan
  from host-side lengths in ``prepare`` and are never captured, so the default stays eager;
  ``--execution graphs`` needs ``--attention-backend triton`` (Intel's Triton backend).
* Collectives: ``xccl`` (torch >= 2.8 built with XCCL; ``torch.distributed.is_xccl_available``).
* Ops: ``TritonOps`` when Intel's Triton backend (pytorch-triton-xpu) is installed, else the
  torch ops (``ReferenceOps`` running on the XPU device).
* IPEX is not used: intel-extension-for-pytorch stopped after 2.8 and aborts at import under
  any other torch.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from anyware.kernels.reference import ReferenceMoEBackend
from anyware.plugin import (
    COLLECTIVES,
    PLUGIN_API_VERSION,
    Capabilities,
    CapabilityError,
    ProbeResult,
    TorchDistributedCommunicator,
)
from anyware_torchdev import TorchDevicePlatform
from anyware_xpu.probe import (
    VISIBLE_DEVICES_ENV,
    intel_triton_problem,
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


class XpuPlatform(TorchDevicePlatform):
    name = "xpu"
    device_type = "xpu"
    dist_backend = "xccl"
    priority = 90
    plugin_api_version = PLUGIN_API_VERSION
    description = "Intel GPUs through stock torch.xpu: SDPA paged attention, vllm-xpu-kernels when installed, XCCL"
    visible_devices_env = VISIBLE_DEVICES_ENV
    runtime_version_attr = "xpu"
    runtime_packages = ("pytorch-triton-xpu", "vllm-xpu-kernels")
    #: attention backends that read host-side lengths planned in ``prepare`` (a replayed graph
    #: would keep the captured batch's), so they never run under ``--execution graphs``
    graph_unsafe_backends: ClassVar[frozenset[str]] = frozenset({"sdpa", "vllm-xpu-kernels"})
    graph_unsafe_hint: ClassVar[str] = (
        "use --execution eager, or --attention-backend triton (Intel's Triton backend) with "
        "--execution graphs")

    @classmethod
    def _probe(cls) -> ProbeResult:
        problem = xpu_problem()
        if problem:
            return ProbeResult.no(problem)
        notes = [f"{cls.visible_device_count()} Intel GPU(s)"]
        notes.append(xpu_kernels_problem() or "vllm-xpu-kernels installed")
        notes.append(intel_triton_problem() or "Intel Triton backend installed")
        return ProbeResult.yes("; ".join(notes))

    def _capabilities(self) -> Capabilities:
        # KV dtypes, page sizes and attention features are the selected backend's
        # (vllm-xpu-kernels where it imports, else the paged SDPA backend)
        return Capabilities(
            dtypes=frozenset({torch.bfloat16, torch.float16, torch.float32}),
            graph_capture=self.graph_capture_supported(),
            compiled_execution=False,
            collectives=frozenset(COLLECTIVES),
            max_world_size=max(1, self.visible_device_count()) if xccl_available() else 1,
            moe=True,
            async_execution=True,
        )

    def _default_execution(self) -> str:
        # the default backend (vllm-xpu-kernels or SDPA) is never captured
        return "eager"

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
