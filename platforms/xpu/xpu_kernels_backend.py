"""`XpuFlashAttentionBackend`: vllm-xpu-kernels' paged ``flash_attn_varlen_func`` (optional fast
path on Intel GPUs).

Written against vllm-xpu-kernels 0.1.16.2 (built for torch 2.14.0+xpu):
``flash_attn_varlen_func(q, k, v, max_seqlen_q, cu_seqlens_q, max_seqlen_k,
cu_seqlens_k=None, seqused_k=None, ..., softmax_scale=None, causal=False, ...,
block_table=None, ...)`` with ``k``/``v`` the paged caches ``[num_blocks, block_size, Hkv, D]``
(our NHD cache viewed per page, no copy), ``seqused_k`` int32 KV lengths and ``block_table``
int32 ``[B, max_blocks]``; block sizes are multiples of 16. The causal mask is aligned to the
bottom right, so prefix + new tokens, decode and verify chains are one call. K/V are stored
with an index_put (torch).
"""

from __future__ import annotations

import importlib.util

import torch
from anyware.kernels.reference.store import store_kv
from anyware.plugin import (
    AttentionBackend,
    AttentionFeatures,
    AttentionLayer,
    CapabilityError,
    ForwardBatch,
    ForwardMode,
    KVCache,
)


class XpuFlashAttentionBackend(AttentionBackend):
    name = "vllm-xpu-kernels"
    features = AttentionFeatures(
        extend_with_prefix=True, decode=True, verify=True, tree_mask=False,
        sliding_window=False, logit_softcap=False, padded_prefill=False,
    )
    page_sizes = (64, 16, 32, 128)
    kv_dtypes = (torch.bfloat16, torch.float16)
    priority = 20  # above the SDPA backend where it imports

    @classmethod
    def is_available(cls, platform) -> tuple[bool, str]:
        if importlib.util.find_spec("vllm_xpu_kernels") is None:
            return False, "vllm-xpu-kernels is not installed (pip install anyware[xpu])"
        try:
            import vllm_xpu_kernels  # noqa: F401  (loads the SYCL kernels; needs a matching torch)
        except Exception as exc:
            return False, (f"vllm-xpu-kernels does not load with torch {torch.__version__} "
                           f"({type(exc).__name__}: {exc}); install the release built for it")
        return True, ""

    def __init__(self, platform, spec) -> None:
        super().__init__(platform, spec)
        from vllm_xpu_kernels.flash_attn_interface import flash_attn_varlen_func

        self._fa = flash_attn_varlen_func
        self._plan: tuple | None = None

    def prepare(self, batch: ForwardBatch) -> None:
        if batch.mode is ForwardMode.VERIFY and batch.spec and batch.spec.tree_mask is not None:
            raise CapabilityError("the vllm-xpu-kernels backend does not support tree masks; "
                                  "use --attention-backend sdpa")
        cu = [0]
        for e in batch.extend_lens_cpu:
            cu.append(cu[-1] + e)
        cu_q = torch.tensor(cu, dtype=torch.int32).to(batch.seq_lens.device, non_blocking=True)
        self._plan = (cu_q, max(batch.extend_lens_cpu), max(batch.seq_lens_cpu))

    def forward(self, q, k, v, layer: AttentionLayer, cache: KVCache,
                batch: ForwardBatch) -> torch.Tensor:
        self.calls += 1
        if layer.sliding_window is not None or layer.logit_softcap:
            raise CapabilityError("vllm-xpu-kernels backend: sliding window / soft-cap not wired; "
                                  "use --attention-backend sdpa")
        if self._plan is None:
            raise CapabilityError("vllm-xpu-kernels backend: forward() before prepare()")
        k_cache, v_cache = cache.k[layer.layer_id], cache.v[layer.layer_id]
        store_kv(k_cache, v_cache, k, v, batch.out_slots)
        ps = batch.page_size
        cu_q, max_q, max_k = self._plan
        return self._fa(
            q.contiguous(), k_cache.view(-1, ps, *k_cache.shape[1:]),
            v_cache.view(-1, ps, *v_cache.shape[1:]), max_q, cu_q, max_k,
            seqused_k=batch.seq_lens, softmax_scale=layer.scale, causal=True,
            block_table=batch.page_table)
