"""A paged-attention backend over a head-major ("HND") KV cache, in plain torch.

The cache of one layer is ``[num_pages, num_kv_heads, page_size, head_dim]``: the tokens of one
head within a page are contiguous, so gathering a request's keys for one head reads whole
``page_size x head_dim`` blocks (the layout many accelerator kernels want). The backend
declares the layout through ``KVLayout(head_major=True)``; the core's KV pool then allocates the
cache in that shape, and every slot is addressed through ``KVLayout.slot_index``.

The math is the paged attention of the ``AttentionBackend.forward`` contract, computed in fp32
per request: causal (or a tree mask in VERIFY mode), optional sliding window and logit soft-cap,
GQA by grouping query heads over their KV head.
"""

from __future__ import annotations

import dataclasses

import torch
from anyware.plugin import (
    AttentionBackend,
    AttentionFeatures,
    AttentionLayer,
    ForwardBatch,
    ForwardMode,
    KVCache,
    KVLayout,
)


class HndAttentionBackend(AttentionBackend):
    name = "example-hnd"
    features = AttentionFeatures(extend_with_prefix=True, decode=True, verify=True,
                                 tree_mask=True, sliding_window=True, logit_softcap=True)
    page_sizes = (16, 1, 4, 64)  # the first is the default
    kv_dtypes = (torch.float32, torch.bfloat16, torch.float16)
    # below the platforms' own backends (the cpu platform's torch-reference is 0): contributed
    # to cpu, it is used only when named, never picked by priority
    priority = -10

    def kv_layout(self, page_size: int, kv_dtype: torch.dtype) -> KVLayout:
        # the base class validates the page size and dtype against the declarations
        return dataclasses.replace(super().kv_layout(page_size, kv_dtype), head_major=True)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layer: AttentionLayer,
                cache: KVCache, batch: ForwardBatch) -> torch.Tensor:
        self.calls += 1
        layout = cache.layout
        if not layout.head_major:
            raise ValueError(f"{self.name} needs its head-major KV layout (KVLayout.head_major); "
                             f"this cache is laid out as {tuple(cache.k[layer.layer_id].shape)}")
        k_cache, v_cache = cache.k[layer.layer_id], cache.v[layer.layer_id]
        new = layout.slot_index(batch.out_slots.long())
        k_cache[new] = k.to(k_cache.dtype)
        v_cache[new] = v.to(v_cache.dtype)

        num_tokens, num_heads, _ = q.shape
        hkv, page_size, dv = v_cache.shape[1], layout.page_size, v_cache.shape[3]
        group = num_heads // hkv
        tree = batch.spec.tree_mask if (batch.spec is not None
                                        and batch.mode is ForwardMode.VERIFY) else None
        out = q.new_zeros((num_tokens, num_heads, dv))  # rows of no request stay zero
        start = 0
        for i, (prefix, extend) in enumerate(zip(batch.prefix_lens_cpu, batch.extend_lens_cpu)):
            if extend == 0:
                continue
            seq = prefix + extend
            pages = batch.page_table[i, : -(-seq // page_size)].long()
            # [pages, Hkv, P, D] -> [Hkv, pages * P, D]: each head's tokens in position order
            keys = k_cache[pages].transpose(0, 1).reshape(hkv, -1, k_cache.shape[3])[:, :seq]
            vals = v_cache[pages].transpose(0, 1).reshape(hkv, -1, dv)[:, :seq]
            qi = q[start: start + extend].float().transpose(0, 1)  # [Hq, E, D]
            qi = qi.reshape(hkv, group, extend, -1)
            scores = torch.einsum("hged,hld->hgel", qi, keys.float()) * layer.scale
            if layer.logit_softcap:
                scores = layer.logit_softcap * torch.tanh(scores / layer.logit_softcap)
            allowed = self._mask(q.device, prefix, extend, seq, layer.sliding_window,
                                 tree[i] if tree is not None else None)
            scores = scores.masked_fill(~allowed, float("-inf"))
            probs = torch.softmax(scores, dim=-1)
            o = torch.einsum("hgel,hld->hged", probs, vals.float())  # [Hkv, group, E, Dv]
            out[start: start + extend] = o.reshape(num_heads, extend, dv).transpose(0, 1).to(q.dtype)
            start += extend
        return out

    @staticmethod
    def _mask(device: torch.device, prefix: int, extend: int, seq: int,
              sliding_window: int | None, tree: torch.Tensor | None) -> torch.Tensor:
        """[E, seq] — new token j (at position prefix + j) may see key position p."""
        qpos = prefix + torch.arange(extend, device=device)
        kpos = torch.arange(seq, device=device)
        allowed = kpos[None, :] <= qpos[:, None]
        if sliding_window is not None:
            allowed &= kpos[None, :] > qpos[:, None] - sliding_window
        if tree is not None:  # the new tokens see the prefix and their tree ancestors only
            n = min(tree.shape[-1], extend)
            allowed[:, prefix: prefix + n] = tree[:extend, :n].to(device=device, dtype=torch.bool)
        return allowed
