"""The torch reference attention backend: stores KV, then calls `paged_attention`."""

from __future__ import annotations

import torch
from anyware.kernels.reference.attention import paged_attention
from anyware.kernels.reference.store import store_kv
from anyware.plugin import (
    AttentionBackend,
    AttentionFeatures,
    AttentionLayer,
    ForwardBatch,
    ForwardMode,
    KVCache,
)


class ReferenceAttentionBackend(AttentionBackend):
    """Readable fp32 attention over the paged cache; every feature, every page size; KV in the
    model dtypes or fp8 e4m3 (stored saturated, scale 1.0; read back upcast to fp32)."""

    name = "torch-reference"
    features = AttentionFeatures(
        extend_with_prefix=True,
        decode=True,
        verify=True,
        tree_mask=True,
        sliding_window=True,
        logit_softcap=True,
    )
    page_sizes = (1, 2, 4, 8, 16, 32, 64, 128)
    kv_dtypes = (torch.float32, torch.bfloat16, torch.float16, torch.float8_e4m3fn)

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        layer: AttentionLayer,
        cache: KVCache,
        batch: ForwardBatch,
    ) -> torch.Tensor:
        self.calls += 1
        k_cache, v_cache = cache.k[layer.layer_id], cache.v[layer.layer_id]
        store_kv(k_cache, v_cache, k, v, batch.out_slots)
        tree = batch.spec.tree_mask if (batch.spec and batch.mode is ForwardMode.VERIFY) else None
        return paged_attention(
            q,
            k_cache,
            v_cache,
            batch.page_table,
            batch.page_size,
            batch.prefix_lens_cpu,
            batch.extend_lens_cpu,
            layer.scale,
            sliding_window=layer.sliding_window,
            logit_softcap=layer.logit_softcap,
            tree_mask=tree,
        )
