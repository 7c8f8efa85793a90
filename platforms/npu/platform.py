"""The Ascend NPU platform: ``torch.npu`` from torch_npu, HCCL, torch_npu's fused operators.

* Device and memory: ``torch.npu`` (registered by ``import torch_npu``; the plugin imports it
  at ``init_device``/first use, never in the probe).
* Collectives: ``hccl``.
* Ops: :class:`~anyware_npu.ops.NpuOps` (``npu_rms_norm``, ``npu_add_rms_norm``,
  ``npu_rotary_mul``, ``npu_swiglu``, ``_npu_reshape_and_cache``); attention
  :class:`~anyware_npu.attention.NpuFusedAttentionBackend`
  (``npu_fused_infer_attention_score``); MoE experts
  :class:`~anyware_npu.moe.NpuGroupedMatmulExperts` (``npu_grouped_matmul``).
* Device hooks: the torch-device toolkit (:class:`anyware_torchdev.TorchDevicePlatform` over
  ``torch.npu``, ``device_module_import = "torch_npu"``).
* Graphs: declared where ``torch.npu`` has ``NPUGraph``/``graph``/``graph_pool_handle``
  (recent torch_npu), with the toolkit's ``graphs`` strategy (options ``npu_graph_*``). The
  fused attention backend passes host lists (``actual_seq_lengths*``) planned in ``prepare``,
  so it is never captured: the default stays eager and ``--execution graphs`` is refused with
  it (a graph-safe backend contributed by an extension plugin can use graphs).

The op schemas the plugin was written against are in ``schemas/torch_npu_ops.json``.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import ClassVar

import torch
from anyware.plugin import (
    COLLECTIVES,
    PLUGIN_API_VERSION,
    Capabilities,
    CapabilityError,
    ProbeResult,
    TorchDistributedCommunicator,
)
from anyware_npu.probe import npu_problem, visible_device_count
from anyware_torchdev import TorchDevicePlatform


class NpuPlatform(TorchDevicePlatform):
    name = "npu"
    device_type = "npu"
    dist_backend = "hccl"
    priority = 85
    plugin_api_version = PLUGIN_API_VERSION
    description = "Huawei Ascend NPUs through torch_npu: fused infer attention, HCCL"
    device_module_import = "torch_npu"  # registers torch.npu
    #: attention backends that pass host lists planned in ``prepare`` (a replayed graph would
    #: keep the captured batch's), so they never run under ``--execution graphs``
    graph_unsafe_backends: ClassVar[frozenset[str]] = frozenset({"npu-fused-infer-attention"})

    @classmethod
    def _probe(cls) -> ProbeResult:
        problem = npu_problem()
        if problem:
            return ProbeResult.no(problem)
        return ProbeResult.yes(f"{cls.visible_device_count()} Ascend NPU(s)")

    @classmethod
    def visible_device_count(cls) -> int:
        """torch.npu's count once torch_npu is loaded, else ``/dev/davinci*`` (the probe never
        imports torch_npu)."""
        return visible_device_count()

    @classmethod
    def graph_capture_supported(cls) -> bool:
        """Whether ``torch.npu`` has a graph API; False where torch_npu does not import."""
        try:
            return super().graph_capture_supported()
        except (ImportError, OSError, CapabilityError):
            return False

    def torch_npu(self) -> ModuleType:
        """The torch_npu module (imported on first use; registers ``torch.npu``)."""
        return importlib.import_module("torch_npu")

    def _capabilities(self) -> Capabilities:
        # KV dtypes, page sizes and attention features are NpuFusedAttentionBackend's
        return Capabilities(
            dtypes=frozenset({torch.bfloat16, torch.float16}),
            graph_capture=self.graph_capture_supported(),
            compiled_execution=False,
            collectives=frozenset(COLLECTIVES),
            max_world_size=max(1, self.visible_device_count()),
            moe=True,
            async_execution=True,
        )

    def _default_execution(self) -> str:
        # the platform's own attention backend is never captured
        return "eager"

    def runtime_versions(self) -> dict[str, str]:
        versions = super().runtime_versions()  # torch, torch-npu
        cann = getattr(torch.version, "cann", None)
        if cann:
            versions["cann"] = str(cann)
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
