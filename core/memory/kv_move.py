"""Copying KV entries between slots of a pool, in whatever layout its backend declared."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from anyware.plugin import KVCache


def move_kv(cache: KVCache, src: torch.Tensor, dst: torch.Tensor,
            extra: Sequence[torch.Tensor] = ()) -> None:
    """Copy the K and V of slots ``src`` to slots ``dst`` (1-D int64 device tensors of equal
    length) in every layer of ``cache``, and the rows ``src`` to ``dst`` of each slot-major
    tensor in ``extra`` (``[slots, ...]``, e.g. an EAGLE-3 head's features). Each layer is one gather then one scatter, so a
    destination that is also a source reads the value before the copy. Layout-generic
    through ``KVLayout.slot_index`` (token-major, head-major and the interleaved layout's
    views alike). Device ops only: no host synchronisation."""
    if src.numel() == 0:
        return
    layout = cache.layout
    s_idx, d_idx = layout.slot_index(src), layout.slot_index(dst)
    for tensors in (cache.k, cache.v):
        for t in tensors:
            t[d_idx] = t[s_idx]
    for t in extra:
        t[dst] = t[src]
