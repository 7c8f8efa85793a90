"""The CUDA platform: Triton kernels (FlashInfer attention when installed), NCCL, CUDA graphs."""

from __future__ import annotations

import contextlib
import importlib.metadata

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
from anyware_cuda.probe import cuda_problem, visible_device_count

DEFAULT_GRAPH_MAX_BS = 256
DEFAULT_GRAPH_MAX_PREFILL = 2048


class CudaPlatform(Platform):
    name = "cuda"
    device_type = "cuda"
    dist_backend = "nccl"
    priority = 100
    plugin_api_version = PLUGIN_API_VERSION
    description = "NVIDIA GPUs: Triton kernels, FlashInfer attention when installed, NCCL"

    @classmethod
    def _probe(cls) -> ProbeResult:
        problem = cuda_problem()
        if problem:
            return ProbeResult.no(problem)
        return ProbeResult.yes(f"{visible_device_count()} CUDA device(s), torch CUDA "
                               f"{torch.version.cuda}")

    def _capabilities(self) -> Capabilities:
        # KV dtypes, page sizes and attention features are the selected backend's (Triton's
        # by default)
        return Capabilities(
            dtypes=frozenset({torch.bfloat16, torch.float16, torch.float32}),
            graph_capture=True,
            compiled_execution=False,
            collectives=frozenset(COLLECTIVES),
            max_world_size=max(1, visible_device_count()),
            moe=True,
            async_execution=True,
        )

    def _default_execution(self) -> str:
        return "graphs"

    # ---------------------------------------------------------------- device
    def _init_device(self, rank: int, local_rank: int) -> torch.device:
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise CapabilityError(f"local rank {local_rank} but only {count} CUDA device(s)")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)

    def device_count(self) -> int:
        return visible_device_count()

    def memory_info(self) -> MemoryInfo:
        free, total = torch.cuda.mem_get_info(self.device)
        return MemoryInfo(int(free), int(total))

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)

    def empty_cache(self) -> None:
        torch.cuda.empty_cache()

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)
        torch.cuda.manual_seed_all(seed)

    def device_name(self) -> str:
        return torch.cuda.get_device_name(self.device)

    def runtime_versions(self) -> dict[str, str]:
        versions = {"torch": torch.__version__, "cuda": str(torch.version.cuda)}
        for dist in ("triton", "flashinfer-python"):
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                versions[dist] = importlib.metadata.version(dist)
        return versions

    # ---------------------------------------------------------------- ops
    def _create_ops(self):
        from anyware.kernels.triton.ops import TritonOps

        return TritonOps()

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

    def _execution_strategy(self, kind: str):
        if kind != "graphs":
            raise CapabilityError(f"platform 'cuda' has no {kind!r} execution strategy")
        from anyware_cuda.graphs import CudaGraphExecution

        extra = self.config.extra if self.config else {}
        sizes = extra.get("cuda_graph_batch_sizes")
        default_max = min(DEFAULT_GRAPH_MAX_BS, self.config.max_batch_size if self.config else 256)
        max_bs = int(extra.get("cuda_graph_max_batch_size", default_max))
        # prefill graphs pay off while eager prefill is launch-bound (below ~2k tokens on an
        # 8B model); 0 turns them off
        chunk = self.config.max_prefill_tokens if self.config else DEFAULT_GRAPH_MAX_PREFILL
        max_prefill = min(chunk, int(extra.get("cuda_graph_max_prefill_tokens",
                                               DEFAULT_GRAPH_MAX_PREFILL)))
        return CudaGraphExecution(tuple(sizes) if sizes else None, max_batch_size=max_bs,
                                  max_prefill_tokens=max_prefill)
