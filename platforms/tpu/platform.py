"""The TPU platform: the core's model through torchax, compiled per padded shape bucket.

Torch-side tensors (batch metadata, sampling, logits) live on the host; model weights and the
KV cache live in JAX arrays on JAX's default device (a TPU on a TPU VM, the CPU otherwise)
while the compiled strategy runs. See docs/platforms/tpu.md.
"""

from __future__ import annotations

import os

import torch
from anyware.kernels.reference import ReferenceOps
from anyware.plugin import (
    COLLECTIVES,
    PLUGIN_API_VERSION,
    Capabilities,
    CompletedEvent,
    MemoryInfo,
    Platform,
    PlatformConfig,
    ProbeResult,
)
from anyware.plugin.errors import CapabilityError
from anyware_tpu import jaxenv
from anyware_tpu.attention import RaggedPagedAttention
from anyware_tpu.probe import probe

DEFAULT_KV_BYTES = 1 << 30
MAX_WORLD_SIZE = 64  # JAX processes in one multi-controller job (collectives)


class TpuOps(ReferenceOps):
    """Norm, rotary, activation and sampling as torch ops: torchax lowers them to XLA inside
    the compiled step; on host tensors they run as torch."""

    provider = "torch-via-torchax"


class TpuPlatform(Platform):
    name = "tpu"
    device_type = "cpu"  # torch-side tensors are host tensors; JAX owns the device arrays
    dist_backend = "gloo"
    priority = 30
    plugin_api_version = PLUGIN_API_VERSION
    description = "JAX through torchax: compiled shape buckets, ragged paged attention"

    @classmethod
    def _probe(cls) -> ProbeResult:
        return probe()

    def _capabilities(self) -> Capabilities:
        # KV dtypes, page sizes and attention features are RaggedPagedAttention's
        return Capabilities(
            dtypes=frozenset({torch.float32, torch.bfloat16}),
            graph_capture=False,
            compiled_execution=True,
            collectives=frozenset(COLLECTIVES),
            max_world_size=MAX_WORLD_SIZE,
            moe=True,
        )

    def _default_dtype(self) -> torch.dtype:
        return torch.bfloat16 if jaxenv.backend() == "tpu" else torch.float32

    def _default_execution(self) -> str:
        return "compiled"

    def _configure(self, config: PlatformConfig) -> PlatformConfig:
        from anyware_tpu.buckets import BucketOptions

        BucketOptions.from_extra(config.extra)  # unknown keys and bad values fail here
        return config

    def _init_device(self, rank: int, local_rank: int) -> torch.device:
        launch = jaxenv.launch_env()
        if launch is not None:  # one rank of several: join the multi-controller JAX job
            jaxenv.init_distributed(*launch)
        jaxenv.torchax_env()  # import torchax (through the shim) and pick JAX's device
        return torch.device("cpu")

    def device_count(self) -> int:
        """This process's devices; before JAX starts, counted without starting it."""
        if jaxenv.backends_started():
            return len(jaxenv.jax_module().local_devices())
        return jaxenv.local_device_count_hint()

    def memory_info(self) -> MemoryInfo:
        stats = jaxenv.jax_module().devices()[0].memory_stats() or {}
        if "bytes_limit" in stats:
            total = int(stats["bytes_limit"])
            return MemoryInfo(total - int(stats.get("bytes_in_use", 0)), total)
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return MemoryInfo(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"), total)

    def kv_cache_budget(self, mem_fraction: float, reserve_bytes: int) -> int:
        budget = super().kv_cache_budget(mem_fraction, reserve_bytes)
        if jaxenv.backend() == "cpu":  # host memory is shared with everything else
            return min(budget, DEFAULT_KV_BYTES)
        return budget

    def synchronize(self) -> None:
        jaxenv.jax_module().effects_barrier()

    def record_event(self) -> CompletedEvent:
        return CompletedEvent()  # the compiled step returns host logits

    def copy_to_host(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.clone()

    def device_name(self) -> str:
        dev = jaxenv.jax_module().devices()[0]
        return f"{dev.platform}:{getattr(dev, 'device_kind', '?')} (JAX {jaxenv.backend()} backend)"

    def runtime_versions(self) -> dict[str, str]:
        from importlib.metadata import version

        out = super().runtime_versions()
        for pkg in ("jax", "jaxlib", "torchax", "libtpu"):
            try:
                out[pkg] = version(pkg)
            except Exception:
                continue
        return out

    def _create_ops(self) -> TpuOps:
        return TpuOps()

    def _attention_backends(self):
        return [RaggedPagedAttention]

    def _moe_backends(self):
        from anyware_tpu.moe import JaxMoEBackend

        return [JaxMoEBackend]

    def _communicator(self, rank, world_size):
        from anyware_tpu.comm import JaxCommunicator

        return JaxCommunicator(rank, world_size)

    def _execution_strategy(self, kind: str):
        if kind != "compiled":
            raise CapabilityError(f"platform 'tpu' runs 'eager' or 'compiled', not {kind!r}")
        from anyware_tpu.buckets import BucketOptions
        from anyware_tpu.compiled import CompiledExecution

        if self.config is None:  # not configured (a conformance run): no engine bounds to
            # warm up for, so each bucket compiles on its first use
            return CompiledExecution(BucketOptions(warmup=False))
        return CompiledExecution(BucketOptions.from_config(self.config))
