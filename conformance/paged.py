"""Paged-attention scenarios: a KV cache full of random values, requests whose pages are
scattered at random (so an off-by-one page or slot shows), page-table padding that points at
live pages (so reading past a request's length shows), and the fp32 reference result. The
cache is in the backend's declared layout (slot-ordered, interleaved or head-major); slots are
addressed through ``KVLayout.slot_index``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from anyware.kernels import reference as ref
from anyware.plugin import AttentionSpec, ForwardBatch, ForwardMode, KVCache, SpecInfo
from anyware_conformance.inputs import randn


@dataclass
class Scenario:
    batch: ForwardBatch
    cache: KVCache
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    expected: torch.Tensor  # fp32 [T, Hq, Dv]
    k_cache_expected: torch.Tensor
    v_cache_expected: torch.Tensor
    reduction: int


def build(platform, backend, gen, *, dtype, page_size, num_heads, num_kv_heads, head_dim,
          prefix_lens, extend_lens, mode, scale, tree_mask=None, sliding_window=None,
          logit_softcap=None, kv_dtype=None) -> Scenario:
    """``dtype``: the model (q, new k/v) dtype; ``kv_dtype``: the cache's (default: ``dtype``).
    The expected cache holds the new K/V cast to ``kv_dtype`` (fp8 e4m3: saturated to +-448,
    then torch's round to nearest even), and the reference attends over that cache, upcast."""
    dev = platform.device
    dt = getattr(torch, dtype)
    kdt = getattr(torch, kv_dtype or dtype)
    seq_lens = [p + e for p, e in zip(prefix_lens, extend_lens)]
    pages_per = [-(-s // page_size) for s in seq_lens]
    num_pages = 1 + sum(pages_per) + 3  # page 0 is the pool's scratch page
    layout = backend.kv_layout(page_size, kdt)
    num_pages = -(-num_pages // layout.alignment) * layout.alignment
    cache = layout.allocate(platform, 1, num_pages)
    # every slot holds random data: the prefix KV and stale garbage alike
    cache.k[0].copy_(randn(gen, layout.k_shape(num_pages), kdt, dev))
    cache.v[0].copy_(randn(gen, layout.v_shape(num_pages), kdt, dev))
    perm = (torch.randperm(num_pages - 1, generator=gen) + 1).tolist()
    width = max(pages_per) + 1
    table = torch.zeros((len(seq_lens), width), dtype=torch.int32)
    used = 0
    for i, n in enumerate(pages_per):
        table[i, :n] = torch.tensor(perm[used: used + n])
        used += n
        table[i, n:] = torch.tensor(perm[: width - n]) if width > n else table[i, n:]
    out_slots = []
    for i, (p, e) in enumerate(zip(prefix_lens, extend_lens)):
        for pos in range(p, p + e):
            out_slots.append(int(table[i, pos // page_size]) * page_size + pos % page_size)
    t = sum(extend_lens)
    spec = None
    if mode is ForwardMode.VERIFY:
        tm = tree_mask.to(dev) if tree_mask is not None else None
        spec = SpecInfo(num_draft_tokens=max(extend_lens) - 1, tree_mask=tm)
    batch = ForwardBatch.build(
        mode=mode, input_ids=[0] * t, prefix_lens=prefix_lens, extend_lens=extend_lens,
        page_table=table, out_slots=out_slots, page_size=page_size, device=dev,
        logits_all=mode is ForwardMode.VERIFY, spec=spec,
    )
    q = randn(gen, (t, num_heads, head_dim), dt, dev)
    k = randn(gen, (t, num_kv_heads, head_dim), dt, dev)
    v = randn(gen, (t, num_kv_heads, head_dim), dt, dev)
    # the expected cache in the layout's own shape (slot-ordered or head-major) ...
    kc, vc = cache.k[0].cpu().clone(), cache.v[0].cpu().clone()
    new = layout.slot_index(torch.tensor(out_slots, dtype=torch.int64))
    kc[new], vc[new] = _cast(k.cpu(), kdt), _cast(v.cpu(), kdt)
    # ... and slot-ordered for the reference
    every = layout.slot_index(torch.arange(num_pages * page_size))
    expected = ref.paged_attention(
        q.cpu().float(), kc[every].float(), vc[every].float(), table, page_size, list(prefix_lens),
        list(extend_lens), scale, sliding_window=sliding_window, logit_softcap=logit_softcap,
        tree_mask=tree_mask,
    ).float()
    return Scenario(batch, cache, q, k, v, expected, kc, vc, max(seq_lens))


def _cast(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if dtype == torch.float8_e4m3fn:  # the KV contract: saturate (scale 1.0), never NaN
        x = x.float().clamp(-448.0, 448.0)
    return x.to(dtype)


def spec_for(num_heads, num_kv_heads, head_dim, dtype, batch_size, max_len, layers=1):
    return AttentionSpec(layers, num_heads, num_kv_heads, head_dim, head_dim,
                         getattr(torch, dtype), batch_size, max_len)
