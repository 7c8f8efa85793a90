"""`FlashInferAttentionBackend`: FlashInfer's paged decode / prefill kernels on our NHD cache.

Our layer cache is ``[num_pages * page_size, Hkv, D]`` (flat slots); viewed as
``[num_pages, page_size, Hkv, D]`` it is FlashInfer's "NHD" paged layout, so no copy is made.
FlashInfer wants CSR page lists (``indptr``, ``indices``, ``last_page_len``) instead of our
padded page table: ``prepare`` builds them from the host lengths (the compaction index is
built on the host, the gather runs on the device, so nothing waits for the device) and calls
the wrappers' ``plan``. Graph replay: one CUDA-graph decode wrapper per batch size with fixed
buffers; ``update`` re-plans it for the real batch before the replay (host work, no device
sync). K/V are stored with the portable Triton store kernel.

Written against flashinfer-python 0.6.x (``BatchDecodeWithPagedKVCacheWrapper`` and
``BatchPrefillWithPagedKVCacheWrapper``: ``plan(...)`` then ``run(q, (k_cache, v_cache))``).
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch
from anyware.kernels.triton.store import store_kv
from anyware.plugin import (
    AttentionBackend,
    AttentionFeatures,
    AttentionLayer,
    CapabilityError,
    ForwardBatch,
    ForwardMode,
    KVCache,
)

_WORKSPACE_BYTES = 256 * 1024 * 1024


def _csr(batch: ForwardBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Host ``indptr`` [B+1], ``last_page_len`` [B] (int32) and the flat gather index (int64)
    of each request's used page-table entries."""
    ps, cols = batch.page_size, batch.page_table.shape[1]
    counts = [max(1, (s + ps - 1) // ps) for s in batch.seq_lens_cpu]
    last = [s - (n - 1) * ps for s, n in zip(batch.seq_lens_cpu, counts)]
    indptr = [0]
    gather: list[int] = []
    for row, n in enumerate(counts):
        indptr.append(indptr[-1] + n)
        gather.extend(range(row * cols, row * cols + n))
    i32 = torch.int32
    return torch.tensor(indptr, dtype=i32), torch.tensor(last, dtype=i32), torch.tensor(gather)


class FlashInferAttentionBackend(AttentionBackend):
    """FlashInfer paged attention; opt-in (``--attention-backend flashinfer``)."""

    name = "flashinfer"
    features = AttentionFeatures(
        extend_with_prefix=True, decode=True, verify=True, tree_mask=False,
        sliding_window=False, logit_softcap=False,
    )
    page_sizes = (16, 1, 8, 32, 64)
    kv_dtypes = (torch.bfloat16, torch.float16)
    # below Triton (10): opt-in with --attention-backend flashinfer until it is validated on
    # hardware (docs/cuda.md: without flashinfer-jit-cache every kernel variant JIT-compiles
    # at first use, minutes per variant on the H100 host, and only 2 conformance cases ran)
    priority = 5

    @classmethod
    def is_available(cls, platform) -> tuple[bool, str]:
        if importlib.util.find_spec("flashinfer") is None:
            return False, "flashinfer is not installed (pip install flashinfer-python)"
        return True, ""

    def __init__(self, platform, spec) -> None:
        super().__init__(platform, spec)
        import flashinfer

        self._fi = flashinfer
        dev = platform.device
        self._workspace = torch.empty(_WORKSPACE_BYTES, dtype=torch.uint8, device=dev)
        self._decode = flashinfer.BatchDecodeWithPagedKVCacheWrapper(
            self._workspace, "NHD", use_tensor_cores=self._tensor_cores())
        self._prefill = flashinfer.BatchPrefillWithPagedKVCacheWrapper(self._workspace, "NHD")
        self._graph: dict[int, Any] = {}
        self._graph_bufs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._wrapper: Any = None
        self._scale = spec.head_dim ** -0.5

    def _tensor_cores(self) -> bool:
        # grouped-query decode runs faster on the prefill (tensor-core) kernels
        return self.spec.num_heads // self.spec.num_kv_heads >= 4

    def init_graph_buffers(self, max_batch_size: int, max_pages_per_req: int) -> None:
        dev = self.platform.device
        self._graph_bufs = (
            torch.zeros(max_batch_size + 1, dtype=torch.int32, device=dev),
            torch.zeros(max_batch_size * max_pages_per_req, dtype=torch.int32, device=dev),
            torch.ones(max_batch_size, dtype=torch.int32, device=dev),
        )
        self._graph_workspace = torch.empty(_WORKSPACE_BYTES, dtype=torch.uint8, device=dev)

    def _graph_wrapper(self, bsz: int):
        wrapper = self._graph.get(bsz)
        if wrapper is None:
            indptr, indices, last = self._graph_bufs
            wrapper = self._fi.BatchDecodeWithPagedKVCacheWrapper(
                self._graph_workspace, "NHD", use_cuda_graph=True,
                use_tensor_cores=self._tensor_cores(),
                paged_kv_indptr_buffer=indptr[: bsz + 1], paged_kv_indices_buffer=indices,
                paged_kv_last_page_len_buffer=last[:bsz],
            )
            self._graph[bsz] = wrapper
        return wrapper

    def _plan(self, batch: ForwardBatch, wrapper) -> None:
        s = self.spec
        indptr, last, gather = _csr(batch)
        indices = batch.page_table.reshape(-1)[gather.to(batch.page_table.device, non_blocking=True)]
        dtype = s.dtype
        if batch.mode is ForwardMode.DECODE:
            wrapper.plan(indptr, indices, last, s.num_heads, s.num_kv_heads, s.head_dim,
                         batch.page_size, pos_encoding_mode="NONE", sm_scale=self._scale,
                         q_data_type=dtype, kv_data_type=dtype)
        else:
            qo = torch.tensor([0, *torch.tensor(batch.extend_lens_cpu).cumsum(0).tolist()],
                              dtype=torch.int32)
            wrapper.plan(qo, indptr, indices, last, s.num_heads, s.num_kv_heads, s.head_dim,
                         batch.page_size, causal=True, sm_scale=self._scale,
                         q_data_type=dtype, kv_data_type=dtype)
        self._wrapper = wrapper

    def _use_graph(self, batch: ForwardBatch) -> bool:
        if self._graph_bufs is None or batch.mode is not ForwardMode.DECODE:
            return False
        indptr, indices, _ = self._graph_bufs
        return batch.batch_size + 1 <= indptr.shape[0] and (
            batch.batch_size * batch.page_table.shape[1] <= indices.shape[0])

    def prepare(self, batch: ForwardBatch) -> None:
        if batch.mode is ForwardMode.VERIFY and batch.spec and batch.spec.tree_mask is not None:
            raise CapabilityError("the flashinfer attention backend does not support tree masks")
        if self._use_graph(batch):
            self._plan(batch, self._graph_wrapper(batch.batch_size))
        elif batch.mode is ForwardMode.DECODE:
            self._plan(batch, self._decode)
        else:
            self._plan(batch, self._prefill)

    def update(self, batch: ForwardBatch) -> None:
        # graph replay: re-plan the captured wrapper for the real (padded) batch; host work
        # with host inputs, so the device is never waited on
        if self._use_graph(batch):
            self._plan(batch, self._graph_wrapper(batch.batch_size))

    def forward(self, q, k, v, layer: AttentionLayer, cache: KVCache,
                batch: ForwardBatch) -> torch.Tensor:
        self.calls += 1
        if layer.sliding_window is not None or layer.logit_softcap:
            raise CapabilityError("flashinfer backend: sliding window / soft-cap not wired")
        k_cache, v_cache = cache.k[layer.layer_id], cache.v[layer.layer_id]
        store_kv(k_cache, v_cache, k, v, batch.out_slots)
        ps = batch.page_size
        paged = (
            k_cache.view(-1, ps, *k_cache.shape[1:]),
            v_cache.view(-1, ps, *v_cache.shape[1:]),
        )
        # the plan used the default scale; FlashInfer folds k_scale into the softmax scale
        ratio = layer.scale / self._scale
        k_scale = None if abs(ratio - 1.0) < 1e-12 else ratio
        return self._wrapper.run(q.contiguous(), paged, k_scale=k_scale)
