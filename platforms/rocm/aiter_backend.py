"""`AiterAttentionBackend`: aiter's Triton paged-attention decode and varlen attention.

Layout: the pool's NHD cache (``[num_pages * page_size, Hkv, D]``, the same as the portable
Triton backend's). aiter's decode kernel wants ``[num_blocks, Hkv, block_size, D]`` but
indexes the cache only through the four strides it is given, so the NHD cache viewed as
``[num_pages, page_size, Hkv, D]`` and permuted to ``[num_pages, Hkv, page_size, D]`` is read
in place: no layout variant, no copy, no per-step transpose.

* DECODE: ``paged_attention_decode`` with the batch's page table and KV lengths.
* EXTEND / VERIFY (causal chain) / MIXED: each request's KV (cached prefix and the tokens just
  stored) is gathered into one ragged ``[total_kv, Hkv, D]`` tensor (the slot index is built
  on the host in ``prepare``, one copy to the device) and ``flash_attn_varlen_func`` runs with
  a bottom-right causal mask, which is exactly "attend to the prefix and causally to the new
  tokens".
* K/V are stored with the portable Triton store kernel.

Eager only (``max_seq_len`` and the gather index are host values). Tree masks, sliding
windows and logit soft-caps are not wired: not declared.
"""

from __future__ import annotations

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
from anyware_rocm import aiter_kernels


def _tl_dtype(dtype: torch.dtype):
    import triton.language as tl

    return {torch.bfloat16: tl.bfloat16, torch.float16: tl.float16,
            torch.float32: tl.float32}[dtype]


def varlen_index(batch: ForwardBatch) -> tuple[list[int], list[int], list[int]]:
    """Host ``cu_seqlens_q``, ``cu_seqlens_k`` and the flat slot of every KV row (each
    request's ``seq_len`` slots, in order) from the host lengths and a host page table."""
    ps = batch.page_size
    table = batch.page_table.cpu() if batch.page_table.device.type != "cpu" else batch.page_table
    cu_q, cu_k, slots = [0], [0], []
    for row, (e, s) in enumerate(zip(batch.extend_lens_cpu, batch.seq_lens_cpu)):
        cu_q.append(cu_q[-1] + e)
        cu_k.append(cu_k[-1] + s)
        pages = table[row, : -(-s // ps)].tolist()
        for pos in range(s):
            slots.append(pages[pos // ps] * ps + pos % ps)
    return cu_q, cu_k, slots


class AiterAttentionBackend(AttentionBackend):
    name = "aiter"
    features = AttentionFeatures(
        extend_with_prefix=True, decode=True, verify=True, tree_mask=False,
        sliding_window=False, logit_softcap=False, padded_prefill=False,
    )
    # aiter's decode kernels use the block size as a tl.dot / tl.arange extent
    page_sizes = (16, 32, 64)
    kv_dtypes = (torch.bfloat16, torch.float16)
    priority = 20  # above the portable Triton backend (10) wherever aiter imports

    @classmethod
    def is_available(cls, platform) -> tuple[bool, str]:
        why = getattr(platform, "aiter_problem", lambda: "not a ROCm platform")()
        return (why is None), (why or "")

    def __init__(self, platform, spec) -> None:
        super().__init__(platform, spec)
        if spec.head_dim != spec.v_head_dim:
            raise CapabilityError("the aiter backend needs head_dim == v_head_dim")
        self._pa = aiter_kernels.pa_decode()
        self._mha = aiter_kernels.mha()
        self._one = torch.ones(1)  # k/v scale: host tensors (aiter reads them with .item())
        self._plan: tuple | None = None

    def prepare(self, batch: ForwardBatch) -> None:
        if batch.mode is ForwardMode.VERIFY and batch.spec and batch.spec.tree_mask is not None:
            raise CapabilityError("the aiter attention backend does not support tree masks; "
                                  "use --attention-backend triton")
        if batch.mode is ForwardMode.DECODE:
            self._plan = ("decode", max(batch.seq_lens_cpu))
            return
        cu_q, cu_k, slots = varlen_index(batch)
        dev = batch.out_slots.device
        i32 = torch.int32
        self._plan = (
            "varlen",
            torch.tensor(cu_q, dtype=i32).to(dev, non_blocking=True),
            torch.tensor(cu_k, dtype=i32).to(dev, non_blocking=True),
            torch.tensor(slots, dtype=torch.int64).to(dev, non_blocking=True),
            max(batch.extend_lens_cpu),
            max(batch.seq_lens_cpu),
        )

    def forward(self, q, k, v, layer: AttentionLayer, cache: KVCache,
                batch: ForwardBatch) -> torch.Tensor:
        self.calls += 1
        if layer.sliding_window is not None or layer.logit_softcap:
            raise CapabilityError("aiter backend: sliding window / logit soft-cap are not wired; "
                                  "use --attention-backend triton")
        k_cache, v_cache = cache.k[layer.layer_id], cache.v[layer.layer_id]
        store_kv(k_cache, v_cache, k, v, batch.out_slots)
        plan = self._plan
        if plan is None:
            raise CapabilityError("aiter backend: forward() before prepare()")
        if plan[0] == "decode":
            ps = batch.page_size
            paged_k = k_cache.view(-1, ps, *k_cache.shape[1:]).permute(0, 2, 1, 3)
            paged_v = v_cache.view(-1, ps, *v_cache.shape[1:]).permute(0, 2, 1, 3)
            out = torch.empty(q.shape[0], q.shape[1], v.shape[-1], dtype=q.dtype,
                              device=q.device)
            self._pa.paged_attention_decode(
                out, q.contiguous(), paged_k, paged_v, batch.seq_lens, batch.page_table,
                layer.scale, plan[1], _tl_dtype(q.dtype), self._one, self._one)
            return out
        _, cu_q, cu_k, slots, max_q, max_k = plan
        return self._mha.flash_attn_varlen_func(
            q.contiguous(), k_cache[slots], v_cache[slots], cu_q, cu_k, max_q, max_k,
            softmax_scale=layer.scale, causal=True)
