"""`PagedSDPAAttentionBackend`: paged attention through torch's fused
``scaled_dot_product_attention`` on any device (the XPU platform's default).

Each step gathers every request's KV from the NHD page cache into a padded
``[B, Hkv, S, D]`` tensor (the gather index is computed on the device from the page table),
pads the queries to ``[B, Hq, E, D]`` and builds one boolean mask that encodes what each new
token may see: its request's KV up to its own position, minus the sliding window, or the
tree mask over the draft tokens. GQA goes through SDPA's ``enable_gqa``. On XPU torch runs
SDPA with oneDNN's fused attention kernels. K/V are stored with an index_put (torch).

Costs: the gather reads each request's whole KV once per layer and step (paged kernels read
it in place); the optional vllm-xpu-kernels backend avoids that. Logit soft-caps cannot be
expressed through SDPA: not declared.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
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


class PagedSDPAAttentionBackend(AttentionBackend):
    name = "sdpa"
    features = AttentionFeatures(
        extend_with_prefix=True, decode=True, verify=True, tree_mask=True,
        sliding_window=True, logit_softcap=False, padded_prefill=False,
    )
    page_sizes = (16, 1, 32, 64, 128)
    kv_dtypes = (torch.bfloat16, torch.float16, torch.float32)
    priority = 10

    def __init__(self, platform, spec) -> None:
        super().__init__(platform, spec)
        self._plan: tuple | None = None

    def prepare(self, batch: ForwardBatch) -> None:
        dev = batch.seq_lens.device
        smax = max(batch.seq_lens_cpu)
        emax = max(batch.extend_lens_cpu)
        ps = batch.page_size
        kpos = torch.arange(smax, device=dev)
        cols = (kpos // ps).clamp(max=batch.page_table.shape[1] - 1)
        slots = batch.page_table[:, cols].to(torch.int64) * ps + (kpos % ps)  # [B, S]
        j = torch.arange(emax, device=dev)
        ext = batch.extend_lens.to(torch.int64)
        pre = batch.prefix_lens.to(torch.int64)
        seq = batch.seq_lens.to(torch.int64)
        valid_q = j[None, :] < ext[:, None]  # [B, E]
        rows = (batch.extend_start.to(torch.int64)[:, None] + j[None, :]).clamp(
            max=max(batch.num_tokens - 1, 0))
        qpos = pre[:, None] + j[None, :]
        allowed = (kpos[None, None, :] <= qpos[:, :, None]) & (kpos[None, None, :] < seq[:, None, None])
        tree = batch.spec.tree_mask if (batch.mode is ForwardMode.VERIFY and batch.spec) else None
        if tree is not None:
            n = tree.shape[-1]
            rel = kpos[None, :] - pre[:, None]
            in_new = (rel >= 0) & (rel < n)
            tm = tree.to(dev)[torch.arange(len(batch.seq_lens_cpu), device=dev)[:, None, None],
                              j.clamp(max=n - 1)[None, :, None], rel.clamp(0, n - 1)[:, None, :]]
            allowed = torch.where(in_new[:, None, :],
                                  tm & (kpos[None, None, :] < seq[:, None, None]), allowed)
        # padded query rows see key 0 only (no NaN); their output is dropped
        allowed = torch.where(valid_q[:, :, None], allowed, kpos[None, None, :] == 0)
        self._plan = (slots, rows, valid_q, allowed, qpos, kpos)

    def forward(self, q, k, v, layer: AttentionLayer, cache: KVCache,
                batch: ForwardBatch) -> torch.Tensor:
        self.calls += 1
        if layer.logit_softcap:
            raise CapabilityError("the sdpa backend has no logit soft-cap")
        if self._plan is None:
            raise CapabilityError("sdpa backend: forward() before prepare()")
        k_cache, v_cache = cache.k[layer.layer_id], cache.v[layer.layer_id]
        store_kv(k_cache, v_cache, k, v, batch.out_slots)
        slots, rows, valid_q, allowed, qpos, kpos = self._plan
        if layer.sliding_window is not None:
            allowed = allowed & (kpos[None, None, :] > qpos[:, :, None] - layer.sliding_window)
            allowed = torch.where(valid_q[:, :, None], allowed, kpos[None, None, :] == 0)
        kk = k_cache[slots].transpose(1, 2)  # [B, Hkv, S, D]
        vv = v_cache[slots].transpose(1, 2)
        qq = q[rows].transpose(1, 2)  # [B, Hq, E, D]
        out = F.scaled_dot_product_attention(
            qq, kk.to(q.dtype), vv.to(q.dtype), attn_mask=allowed[:, None], scale=layer.scale,
            enable_gqa=layer.num_heads != layer.num_kv_heads)
        return out.transpose(1, 2)[valid_q]  # [T, Hq, Dv]
