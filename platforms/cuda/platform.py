"""The CUDA platform: Triton kernels (FlashInfer attention when installed), NCCL, CUDA graphs.

Device hooks and the graph strategy come from the torch-device toolkit
(:class:`anyware_torchdev.TorchDevicePlatform` over ``torch.cuda``; its graph options apply).
Options of its own (``--platform-option``): ``cuda_fp8_gemv_max_rows`` (default 0, off):
``fp8_linear`` of up to that many rows runs the one-launch few-rows kernel
(``anyware.kernels.triton.fp8_gemv``) instead of quantisation + ``torch._scaled_mm``;
``cuda_fp8_fused_activations`` (default true; false for A/B runs): the norms and SiLU-and-mul
in front of fp8 projections quantise their output in their own launch (plugin API 2.4).
``triton_pdl`` (default: on where every visible GPU is Hopper or later and Triton has the
intrinsics; false turns it off; true where it cannot work is refused at start-up): the
portable Triton kernels launch with programmatic dependent launch
(:mod:`anyware.kernels.triton.pdl`), so each overlaps its predecessor's tail.
"""

from __future__ import annotations

import dataclasses

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
from anyware_cuda.probe import cuda_problem
from anyware_torchdev import TorchDevicePlatform

FP8_MIN_CAPABILITY = (8, 9)  # e4m3 tensor-core GEMMs (torch._scaled_mm): Ada, Hopper and later


class CudaPlatform(TorchDevicePlatform):
    name = "cuda"
    device_type = "cuda"
    dist_backend = "nccl"
    priority = 100
    plugin_api_version = PLUGIN_API_VERSION
    description = "NVIDIA GPUs: Triton kernels, FlashInfer attention when installed, NCCL"
    visible_devices_env = ("CUDA_VISIBLE_DEVICES",)
    runtime_version_attr = "cuda"
    runtime_packages = ("triton", "flashinfer-python")

    @classmethod
    def _probe(cls) -> ProbeResult:
        problem = cuda_problem()
        if problem:
            return ProbeResult.no(problem)
        return ProbeResult.yes(f"{cls.visible_device_count()} CUDA device(s), torch CUDA "
                               f"{torch.version.cuda}")

    def _capabilities(self) -> Capabilities:
        # KV dtypes, page sizes and attention features are the selected backend's (Triton's
        # by default)
        return Capabilities(
            dtypes=frozenset({torch.bfloat16, torch.float16, torch.float32}),
            graph_capture=self.graph_capture_supported(),
            compiled_execution=False,
            collectives=frozenset(COLLECTIVES),
            max_world_size=max(1, self.visible_device_count()),
            moe=True,
            async_execution=True,
            # TritonOps.fp8_linear (torch._scaled_mm): needs compute capability 8.9+, which
            # _configure checks once a config asks for it (the declaration stays device-free)
            quantization=frozenset({"fp8"}),
        )

    def _configure(self, config: PlatformConfig) -> PlatformConfig:
        """Refuse ``--quantization fp8`` where a visible GPU lacks fp8 tensor cores (before Ada /
        Hopper, compute capability 8.9); settle ``triton_pdl`` (:meth:`_with_pdl`); then the
        torch-device checks. Every visible GPU is asked, not the current one: this runs before
        ``init_device`` picks a rank's GPU (reading a capability creates no context)."""
        caps = self._visible_capabilities()
        if config.quantization == "fp8":
            # no visible device counted: ask the current one (None)
            caps_or_current = caps or {None: tuple(torch.cuda.get_device_capability(None))}
            device, (major, minor) = min(caps_or_current.items(), key=lambda item: item[1])
            if (major, minor) < FP8_MIN_CAPABILITY:
                which = f" (device {device} of {len(caps)})" if len(caps) > 1 else ""
                raise CapabilityError(
                    f"fp8 linear layers need compute capability 8.9+ (Ada, Hopper); this GPU is "
                    f"{major}.{minor}{which}; leave --quantization unset, or hide the older "
                    f"GPUs with CUDA_VISIBLE_DEVICES")
        return super()._configure(self._with_pdl(config, caps))

    def _visible_capabilities(self) -> dict[int, tuple[int, int]]:
        """Compute capability of every visible GPU, by index (no device context is created)."""
        return {d: tuple(torch.cuda.get_device_capability(d))
                for d in range(self.visible_device_count())}

    @staticmethod
    def _with_pdl(config: PlatformConfig, caps: dict[int, tuple[int, int]]) -> PlatformConfig:
        """``triton_pdl`` settled: its default from the oldest visible GPU (9.0+ and a Triton
        with the intrinsics, not the interpreter), an explicit true checked against the same."""
        from anyware.kernels.triton.options import coerce_option
        from anyware.kernels.triton.pdl import OPTION, supports_pdl

        usable, why = supports_pdl(min(caps.values()) if caps else None)
        if OPTION in config.extra:
            if coerce_option(OPTION, config.extra[OPTION], False) and not usable:
                raise CapabilityError(f"--platform-option {OPTION}=true: {why}; leave the "
                                      f"option unset (it is on wherever it can work)")
            return config
        return dataclasses.replace(config, extra={**config.extra, OPTION: usable})

    # ---------------------------------------------------------------- ops
    def _create_ops(self):
        from anyware.kernels.triton.ops import TritonOps
        from anyware.kernels.triton.options import coerce_option
        from anyware.kernels.triton.pdl import OPTION as PDL_OPTION

        extra = self.config.extra if self.config is not None else {}
        rows_key, fused_key = f"{self.name}_fp8_gemv_max_rows", f"{self.name}_fp8_fused_activations"
        ops = TritonOps(fp8_gemv_max_rows=coerce_option(rows_key, extra.get(rows_key, 0), 0),
                        pdl=coerce_option(PDL_OPTION, extra.get(PDL_OPTION, False), False))
        if not coerce_option(fused_key, extra.get(fused_key, True), True):
            ops.fp8_activations = False
        return ops

    def _attention_backends(self):
        from anyware.kernels.triton.attention_backend import TritonAttentionBackend
        from anyware_cuda.flashinfer_backend import FlashInferAttentionBackend

        # Triton (priority 10) is the default; FlashInfer (5) is opt-in with
        # --attention-backend flashinfer until validated on hardware (docs/cuda.md)
        return [FlashInferAttentionBackend, TritonAttentionBackend]

    def _moe_backends(self):
        from anyware.kernels.triton.moe_backend import TritonMoEBackend

        return [TritonMoEBackend]

    def _communicator(self, rank, world_size):
        return TorchDistributedCommunicator(rank, world_size)

