"""Paged attention reference: one function for extend (with or without prefix), decode and
verify, computed in fp32 over a batch padded to its longest request."""

from __future__ import annotations

import torch


def slots_for(page_table: torch.Tensor, seq_len_max: int, page_size: int) -> torch.Tensor:
    """int64 ``[B, seq_len_max]``: the KV slot of every position of every request."""
    pos = torch.arange(seq_len_max, device=page_table.device)
    pages = page_table[:, (pos // page_size).clamp(max=page_table.shape[1] - 1)].long()
    return pages * page_size + (pos % page_size)


def paged_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    page_table: torch.Tensor,
    page_size: int,
    prefix_lens: list[int],
    extend_lens: list[int],
    scale: float,
    sliding_window: int | None = None,
    logit_softcap: float | None = None,
    tree_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention of the new tokens over each request's whole KV (already in the cache).

    q: ``[T, Hq, D]`` with request ``i``'s ``extend_lens[i]`` tokens in order; caches ``[S, Hkv, D]``
    (NHD slots); ``page_table`` int32 ``[B, P]``. New token ``j`` of request ``i`` sits at
    position ``prefix_lens[i] + j`` and sees positions ``<=`` its own (minus the sliding window);
    with ``tree_mask`` ``[B, n, n]`` it sees the prefix plus the new tokens the mask allows.
    Returns ``[T, Hq, Dv]`` in ``q.dtype``. Rows past ``sum(extend_lens)`` (padding tokens that
    belong to no request, ``anyware.plugin.padding``) come back as zeros.
    """
    bsz = len(extend_lens)
    num_tokens, hq, _ = q.shape
    hkv, dv = v_cache.shape[1], v_cache.shape[2]
    if bsz == 0 or num_tokens == 0:
        return q.new_zeros((num_tokens, hq, dv))
    dev = q.device
    seq_lens = [p + e for p, e in zip(prefix_lens, extend_lens)]
    smax, emax = max(seq_lens), max(extend_lens)
    slots = slots_for(page_table, smax, page_size)  # [B, S]
    k = k_cache[slots].float()  # [B, S, Hkv, D]
    v = v_cache[slots].float()
    # queries padded to [B, E, Hq, D]
    pre = torch.tensor(prefix_lens, device=dev)
    ext = torch.tensor(extend_lens, device=dev)
    starts = torch.cumsum(ext, 0) - ext
    j = torch.arange(emax, device=dev)
    valid_q = j[None, :] < ext[:, None]  # [B, E]
    rows = (starts[:, None] + j[None, :]).clamp(max=num_tokens - 1)
    qp = q[rows].float()  # [B, E, Hq, D]
    group = hq // hkv
    k = k.repeat_interleave(group, dim=2)
    v = v.repeat_interleave(group, dim=2)
    scores = torch.einsum("behd,bshd->bhes", qp, k) * scale
    if logit_softcap:
        scores = logit_softcap * torch.tanh(scores / logit_softcap)
    qpos = pre[:, None] + j[None, :]  # [B, E]
    kpos = torch.arange(smax, device=dev)
    seq = torch.tensor(seq_lens, device=dev)
    allowed = (kpos[None, None, :] <= qpos[:, :, None]) & (kpos[None, None, :] < seq[:, None, None])
    if sliding_window is not None:
        allowed &= kpos[None, None, :] > qpos[:, :, None] - sliding_window
    if tree_mask is not None:
        n = tree_mask.shape[-1]
        rel = kpos[None, :] - pre[:, None]  # [B, S] index among new tokens
        in_new = (rel >= 0) & (rel < n)
        tm = tree_mask.to(dev)[
            torch.arange(bsz, device=dev)[:, None, None],
            j.clamp(max=n - 1)[None, :, None],
            rel.clamp(0, n - 1)[:, None, :],
        ]
        allowed = torch.where(in_new[:, None, :], tm & (kpos[None, None, :] < seq[:, None, None]), allowed)
    allowed &= valid_q[:, :, None]
    scores = scores.masked_fill(~allowed[:, None, :, :], float("-inf"))
    probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    out = torch.einsum("bhes,bshd->behd", probs, v)  # [B, E, Hq, Dv]
    out = out[valid_q].to(q.dtype)
    if out.shape[0] < num_tokens:
        out = torch.cat([out, out.new_zeros((num_tokens - out.shape[0], hq, dv))])
    return out
