"""The TPU platform's attention backend: the K/V-interleaved paged layout of the Pallas
ragged paged attention kernel, a functional KV write, one call for every batch mode."""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import torch
from anyware.plugin import (
    AttentionBackend,
    AttentionFeatures,
    AttentionLayer,
    ForwardBatch,
    KVCache,
    KVLayout,
)
from anyware_tpu import jaxenv
from anyware_tpu.ragged import ragged_paged_attention, write_kv


def attend(q, k, v, kv_pages, seq_lens, page_table, extend_start, extend_lens, slots, *,
           sm_scale: float, sliding_window: int | None, soft_cap: float | None) -> tuple[Any, Any]:
    """JAX: write the new K/V, then ragged paged attention. Returns ``(new_kv_pages, out)``."""
    jnp = jaxenv.jax_module().numpy
    kv_pages = write_kv(kv_pages, k, v, slots)
    cu_q_lens = jnp.concatenate([extend_start, (extend_start[-1:] + extend_lens[-1:])]).astype(jnp.int32)
    num_seqs = jnp.sum(extend_lens > 0, dtype=jnp.int32).reshape(1)
    out = ragged_paged_attention(q, kv_pages, seq_lens.astype(jnp.int32),
                                 page_table.astype(jnp.int32), cu_q_lens, num_seqs,
                                 sm_scale=sm_scale, sliding_window=sliding_window,
                                 soft_cap=soft_cap)
    return kv_pages, out


@functools.cache
def _eager_attend(sm_scale: float, sliding_window: int | None, soft_cap: float | None):
    jax = jaxenv.jax_module()
    return jax.jit(functools.partial(attend, sm_scale=sm_scale, sliding_window=sliding_window,
                                     soft_cap=soft_cap), donate_argnums=(3,))


class RaggedPagedAttention(AttentionBackend):
    """``forward`` runs inside the compiled step (torchax tensors: the new KV array replaces
    ``cache.kv[layer]``) or eagerly on host tensors (a jitted call per shape, the result
    copied back into the host cache: for conformance and debugging, not for serving)."""

    name = "ragged-paged"
    features = AttentionFeatures(extend_with_prefix=True, decode=True, verify=True,
                                 tree_mask=False, sliding_window=True, logit_softcap=True)
    page_sizes: ClassVar[tuple[int, ...]] = (16, 32, 64, 128)
    kv_dtypes: ClassVar[tuple[torch.dtype, ...]] = (torch.float32, torch.bfloat16)
    priority = 10

    def kv_layout(self, page_size: int, kv_dtype: torch.dtype) -> KVLayout:
        base = super().kv_layout(page_size, kv_dtype)
        if self.spec.v_head_dim != self.spec.head_dim:
            raise ValueError(f"{self.name}: K and V head dims must match for the interleaved layout")
        return KVLayout(base.page_size, base.num_kv_heads, base.head_dim, base.v_head_dim,
                        kv_dtype, alignment=base.alignment, interleaved=True)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layer: AttentionLayer,
                cache: KVCache, batch: ForwardBatch) -> torch.Tensor:
        self.calls += 1
        if cache.kv is None:
            raise ValueError(f"{self.name} needs a KV cache in its interleaved layout (KVLayout.interleaved)")
        statics = {"sm_scale": float(layer.scale), "sliding_window": layer.sliding_window,
                   "soft_cap": layer.logit_softcap}
        kv = cache.kv[layer.layer_id]
        args = (q, k, v, kv, batch.seq_lens, batch.page_table, batch.extend_start,
                batch.extend_lens, batch.out_slots)
        if jaxenv.is_torchax(q):  # traced inside the compiled step: functional state
            new_kv, out = attend(*(jaxenv.to_jax(a) for a in args), **statics)
            cache.kv[layer.layer_id] = jaxenv.wrap(new_kv)
            return jaxenv.wrap(out)
        new_kv, out = _eager_attend(**statics)(*(jaxenv.to_jax(a) for a in args))
        kv.copy_(jaxenv.to_torch(new_kv))
        return jaxenv.to_torch(out).to(q.device)
