"""The Ascend NPU platform: ``torch.npu`` from torch_npu, HCCL, torch_npu's fused operators.

* Device and memory: ``torch.npu`` (registered by ``import torch_npu``; the plugin imports it
  at ``init_device``/first use, never in the probe).
* Collectives: ``hccl``.
* Ops: :class:`~anyware_npu.ops.NpuOps` (``npu_rms_norm``, ``npu_add_rms_norm``,
  ``npu_rotary_mul``, ``npu_swiglu``, ``_npu_reshape_and_cache``); attention
  :class:`~anyware_npu.attention.NpuFusedAttentionBackend`
  (``npu_fused_infer_attention_score``); MoE experts
  :class:`~anyware_npu.moe.NpuGroupedMatmulExperts` (``npu_grouped_matmul``).
* ``torch.npu.NPUGraph`` exists in recent torch_npu; graph capture is not declared until a
  graph strategy is wired to it.

The op schemas the plugin was written against are in ``schemas/torch_npu_ops.json``.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
from types import ModuleType

import torch
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
from anyware_npu.probe import npu_problem, visible_device_count


class NpuPlatform(Platform):
    name = "npu"
    device_type = "npu"
    dist_backend = "hccl"
    priority = 85
    plugin_api_version = PLUGIN_API_VERSION
    description = "Huawei Ascend NPUs through torch_npu: fused infer attention, HCCL"

    @classmethod
    def _probe(cls) -> ProbeResult:
        problem = npu_problem()
        if problem:
            return ProbeResult.no(problem)
        return ProbeResult.yes(f"{visible_device_count()} Ascend NPU(s)")

    def torch_npu(self) -> ModuleType:
        """The torch_npu module (imported on first use; registers ``torch.npu``)."""
        return importlib.import_module("torch_npu")

    def _capabilities(self) -> Capabilities:
        # KV dtypes, page sizes and attention features are NpuFusedAttentionBackend's
        return Capabilities(
            dtypes=frozenset({torch.bfloat16, torch.float16}),
            graph_capture=False,
            compiled_execution=False,
            collectives=frozenset(COLLECTIVES),
            max_world_size=max(1, visible_device_count()),
            moe=True,
            async_execution=True,
        )

    # ---------------------------------------------------------------- device
    def _init_device(self, rank: int, local_rank: int) -> torch.device:
        self.torch_npu()
        count = torch.npu.device_count()
        if local_rank >= count:
            raise CapabilityError(f"local rank {local_rank} but only {count} NPU(s) visible")
        torch.npu.set_device(local_rank)
        return torch.device("npu", local_rank)

    def device_count(self) -> int:
        return visible_device_count()

    def memory_info(self) -> MemoryInfo:
        free, total = torch.npu.mem_get_info(self.device)
        return MemoryInfo(int(free), int(total))

    def synchronize(self) -> None:
        torch.npu.synchronize(self.device)

    def empty_cache(self) -> None:
        torch.npu.empty_cache()

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)
        torch.npu.manual_seed_all(seed)

    def device_name(self) -> str:
        return torch.npu.get_device_name(self.device)

    def runtime_versions(self) -> dict[str, str]:
        versions = {"torch": torch.__version__}
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions["torch-npu"] = importlib.metadata.version("torch-npu")
        cann = getattr(getattr(torch.version, "cann", None), "__str__", None)
        if cann is not None and getattr(torch.version, "cann", None):
            versions["cann"] = str(torch.version.cann)
        return versions

    # ---------------------------------------------------------------- ops
    def _create_ops(self):
        from anyware_npu.ops import NpuOps

        return NpuOps(self.torch_npu())

    def _attention_backends(self):
        from anyware_npu.attention import NpuFusedAttentionBackend

        return [NpuFusedAttentionBackend]

    def _moe_backends(self):
        from anyware_npu.moe import NpuGroupedMatmulMoE

        return [NpuGroupedMatmulMoE]

    def _communicator(self, rank, world_size):
        return TorchDistributedCommunicator(rank, world_size)
