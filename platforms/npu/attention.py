"""`NpuFusedAttentionBackend`: torch_npu's ``npu_fused_infer_attention_score`` on a paged cache.

Schema (``schemas/torch_npu_ops.json``, from Ascend's op-plugin): ``npu_fused_infer_attention_score(
Tensor query, Tensor key, Tensor value, *, ..., Tensor? atten_mask=None,
SymInt[]? actual_seq_lengths=None, SymInt[]? actual_seq_lengths_kv=None, ...,
Tensor? block_table=None, ..., int num_heads=1, float scale=1.0, ..., str input_layout="BSH",
int num_key_value_heads=0, int sparse_mode=0, ..., int block_size=0, ...) -> (Tensor, Tensor)``.

Layout: the pool's NHD cache ``[num_pages * page_size, Hkv, D]`` viewed as
``[num_pages, page_size, Hkv * D]`` is the paged "BSH" cache the op reads with
``block_table`` (the page table, int32) and ``block_size`` (no copy). Page size 128 (the
size Ascend's paged kernels are tuned for; 16-aligned sizes are accepted).

* DECODE: ``input_layout="BSH"``, query ``[B, 1, Hq * D]``, ``actual_seq_lengths_kv`` the KV
  lengths (host list).
* EXTEND / VERIFY (causal chain) / MIXED: ``input_layout="TND"``, query ``[T, Hq, D]``,
  ``actual_seq_lengths`` the cumulative new-token counts, ``actual_seq_lengths_kv`` the KV
  lengths, ``sparse_mode=3`` (causal mask aligned to the bottom right) with the op's
  compressed 2048x2048 upper-triangular ``atten_mask``.

K/V are stored with ``_npu_reshape_and_cache`` (see :mod:`anyware_npu.ops`).
"""

from __future__ import annotations

import torch
from anyware.plugin import (
    AttentionBackend,
    AttentionFeatures,
    AttentionLayer,
    CapabilityError,
    ForwardBatch,
    ForwardMode,
    KVCache,
)

CAUSAL_MASK_SIZE = 2048  # sparse_mode 3 takes a compressed 2048 x 2048 mask


class NpuFusedAttentionBackend(AttentionBackend):
    name = "npu-fused-infer-attention"
    features = AttentionFeatures(
        extend_with_prefix=True, decode=True, verify=True, tree_mask=False,
        sliding_window=False, logit_softcap=False, padded_prefill=False,
    )
    page_sizes = (128, 16, 32, 64)
    kv_dtypes = (torch.bfloat16, torch.float16)
    priority = 10

    def __init__(self, platform, spec) -> None:
        super().__init__(platform, spec)
        self._npu = platform.torch_npu()
        self._mask: torch.Tensor | None = None
        self._plan: tuple | None = None

    def _causal_mask(self, device) -> torch.Tensor:
        if self._mask is None or self._mask.device != device:
            ones = torch.ones(CAUSAL_MASK_SIZE, CAUSAL_MASK_SIZE, dtype=torch.bool, device=device)
            self._mask = torch.triu(ones, diagonal=1)
        return self._mask

    def prepare(self, batch: ForwardBatch) -> None:
        if batch.mode is ForwardMode.VERIFY and batch.spec and batch.spec.tree_mask is not None:
            raise CapabilityError("the NPU fused attention backend does not support tree masks")
        kv = list(batch.seq_lens_cpu)
        if batch.mode is ForwardMode.DECODE:
            self._plan = ("decode", kv, None)
            return
        cum, total = [], 0
        for e in batch.extend_lens_cpu:
            total += e
            cum.append(total)
        self._plan = ("extend", kv, cum)

    def forward(self, q, k, v, layer: AttentionLayer, cache: KVCache,
                batch: ForwardBatch) -> torch.Tensor:
        self.calls += 1
        if layer.sliding_window is not None or layer.logit_softcap:
            raise CapabilityError("NPU fused attention: sliding window / soft-cap are not wired")
        if self._plan is None:
            raise CapabilityError("NPU fused attention: forward() before prepare()")
        k_cache, v_cache = cache.k[layer.layer_id], cache.v[layer.layer_id]
        self.platform.ops().store_kv(k_cache, v_cache, k, v, batch.out_slots)
        ps = batch.page_size
        hq, hkv, d = q.shape[1], k_cache.shape[1], q.shape[2]
        key = k_cache.view(-1, ps, hkv * k_cache.shape[2])
        value = v_cache.view(-1, ps, hkv * v_cache.shape[2])
        mode, kv_lens, cum_q = self._plan
        common = dict(block_table=batch.page_table, block_size=ps, num_heads=hq,
                      num_key_value_heads=hkv, scale=layer.scale, actual_seq_lengths_kv=kv_lens)
        if mode == "decode":
            out, _ = self._npu.npu_fused_infer_attention_score(
                q.reshape(q.shape[0], 1, hq * d), key, value, input_layout="BSH", **common)
            return out.view(q.shape[0], hq, v_cache.shape[2])
        out, _ = self._npu.npu_fused_infer_attention_score(
            q.contiguous(), key, value, input_layout="TND", actual_seq_lengths=cum_q,
            atten_mask=self._causal_mask(q.device), sparse_mode=3, **common)
        return out.view(q.shape[0], hq, v_cache.shape[2])
