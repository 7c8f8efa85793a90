"""The ROCm platform: HIP through torch's ``torch.cuda`` API, RCCL, aiter kernels when aiter
imports, the portable Triton kernels otherwise.

Device hooks and the graph strategy come from the torch-device toolkit
(:class:`anyware_torchdev.TorchDevicePlatform` over ``torch.cuda``, which is HIP on ROCm
builds). Two paths, declared from what the probe found (``anyware platforms`` shows which):

* **aiter**: aiter's Triton paged-attention decode and varlen attention (``aiter`` backend,
  page sizes 16/32/64, bf16/fp16) and its RMSNorm; the portable Triton backend stays
  available by name (``--attention-backend triton``) for what aiter's path does not declare
  (tree masks, sliding windows, soft-caps, fp32). The aiter backend plans its kernels from
  host-side lengths in ``prepare``, so it is never captured: this path defaults to eager, and
  ``--execution graphs`` needs ``--attention-backend triton``.
* **portable**: the portable Triton kernels (``anyware.kernels.triton``) only, exactly the
  code the CUDA plugin runs, captured into HIP graphs by default where ``torch.cuda`` has a
  graph API (options ``rocm_graph_*``).

A test-only switch (``ANYWARE_ROCM_ALLOW_CUDA_BUILD=1``, or the platform option
``rocm_allow_cuda_build=1`` once selected) lets the plugin run its portable path on a CUDA
build of torch, so the conformance suite can exercise it on an NVIDIA GPU; it is never used
on AMD hardware and says so in ``anyware platforms`` and in reports.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from anyware.plugin import (
    COLLECTIVES,
    PLUGIN_API_VERSION,
    Capabilities,
    CapabilityError,
    PlatformConfig,
    ProbeResult,
    TorchDistributedCommunicator,
)
from anyware_rocm.probe import (
    ALLOW_CUDA_ENV,
    ALLOW_CUDA_OPTION,
    VISIBLE_DEVICES_ENV,
    RocmEnvironment,
    rocm_environment,
    visible_device_count,
)
from anyware_torchdev import TorchDevicePlatform


class RocmPlatform(TorchDevicePlatform):
    name = "rocm"
    device_type = "cuda"  # torch's device type on HIP builds
    dist_backend = "nccl"  # torch.distributed's name for RCCL on ROCm builds
    priority = 95  # below cuda (100): on a CUDA build the test-only switch never wins by default
    plugin_api_version = PLUGIN_API_VERSION
    description = "AMD GPUs (ROCm/HIP): aiter kernels when importable, portable Triton otherwise, RCCL"
    visible_devices_env = VISIBLE_DEVICES_ENV
    runtime_version_attr = "hip"
    runtime_packages = ("triton", "pytorch-triton-rocm", "amd-aiter")
    #: attention backends that read host-side lengths planned in ``prepare`` (a replayed graph
    #: would keep the captured batch's), so they never run under ``--execution graphs``
    graph_unsafe_backends: ClassVar[frozenset[str]] = frozenset({"aiter"})
    graph_unsafe_hint: ClassVar[str] = (
        "use --execution eager, or --attention-backend triton with --execution graphs")

    def __init__(self) -> None:
        super().__init__()
        self.env: RocmEnvironment = rocm_environment()

    @classmethod
    def visible_device_count(cls) -> int:
        return visible_device_count()

    @classmethod
    def _probe(cls) -> ProbeResult:
        env = rocm_environment()
        if env.problem:
            return ProbeResult.no(env.problem)
        if env.test_only_cuda:
            return ProbeResult.yes(
                f"TEST ONLY: CUDA build of torch accepted ({ALLOW_CUDA_ENV}=1) — portable Triton "
                f"path on {env.devices} NVIDIA device(s), not AMD hardware")
        path = "aiter + portable Triton" if env.aiter_problem is None else (
            f"portable Triton path ({env.aiter_problem})")
        return ProbeResult.yes(f"{env.devices} AMD GPU(s), HIP {torch.version.hip}; {path}")

    def aiter_problem(self) -> str | None:
        """Why aiter's kernels are not used here (``None``: they are)."""
        return self.env.aiter_problem

    @property
    def path(self) -> str:
        return "aiter" if self.aiter_problem() is None else "portable"

    def _capabilities(self) -> Capabilities:
        from anyware.kernels.triton.attention_backend import TritonAttentionBackend

        default = TritonAttentionBackend
        if self.path == "aiter":
            from anyware_rocm.aiter_backend import AiterAttentionBackend

            default = AiterAttentionBackend
        # KV dtypes, page sizes and attention features are the selected backend's (aiter's on
        # the aiter path, else Triton's); the model dtypes follow what that backend computes in
        return Capabilities(
            dtypes=frozenset(default.kv_dtypes) | {torch.bfloat16, torch.float16},
            graph_capture=self.graph_capture_supported(),
            compiled_execution=False,
            collectives=frozenset(COLLECTIVES),
            max_world_size=max(1, self.visible_device_count()),
            moe=True,
            async_execution=True,
        )

    def _default_execution(self) -> str:
        # the default backend is aiter's on the aiter path (not capturable), Triton's otherwise
        if self.path == "aiter":
            return "eager"
        return super()._default_execution()

    def _configure(self, config: PlatformConfig) -> PlatformConfig:
        allow = str(config.extra.get(ALLOW_CUDA_OPTION, "")).lower() in ("1", "true", "yes")
        if allow and not self.env.test_only_cuda and torch.version.hip is None:
            raise CapabilityError(
                f"{ALLOW_CUDA_OPTION}=1 must be set before discovery: export {ALLOW_CUDA_ENV}=1")
        return super()._configure(config)

    # ---------------------------------------------------------------- device
    def device_name(self) -> str:
        name = super().device_name()
        if self.env.test_only_cuda:
            return f"{name} (TEST ONLY: rocm plugin, portable path, not AMD hardware)"
        return name

    def runtime_versions(self) -> dict[str, str]:
        versions = super().runtime_versions()
        versions["rocm_plugin_path"] = self.path
        if self.env.test_only_cuda:
            versions["cuda"] = str(torch.version.cuda)
            versions["test_only"] = f"{ALLOW_CUDA_ENV}=1"
        return versions

    # ---------------------------------------------------------------- ops
    def _create_ops(self):
        if self.path == "aiter":
            from anyware_rocm.aiter_ops import AiterOps

            return AiterOps()
        from anyware.kernels.triton.ops import TritonOps

        return TritonOps()

    def _attention_backends(self):
        from anyware.kernels.triton.attention_backend import TritonAttentionBackend

        if self.path == "aiter":
            from anyware_rocm.aiter_backend import AiterAttentionBackend

            return [AiterAttentionBackend, TritonAttentionBackend]
        return [TritonAttentionBackend]

    def _moe_backends(self):
        from anyware.kernels.triton.moe_backend import TritonMoEBackend

        return [TritonMoEBackend]  # the portable fused-MoE kernel on both paths

    def _communicator(self, rank, world_size):
        return TorchDistributedCommunicator(rank, world_size)
