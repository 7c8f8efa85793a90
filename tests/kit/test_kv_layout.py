"""``KVLayout.head_major`` (the HND order, plugin API 2.1) and ``KVLayout.slot_index``: shapes,
allocation through a platform, and that ``slot_index`` addresses the same token whichever the
order (checked against the slot-ordered layout holding the same values)."""

from __future__ import annotations

import pytest
import torch
from anyware.plugin import KVLayout


def test_head_major_shapes_and_allocation(cpu_platform):
    cpu_platform.init_device(0)
    layout = KVLayout(page_size=4, num_kv_heads=2, head_dim=8, v_head_dim=6,
                      dtype=torch.float16, head_major=True)
    assert layout.k_shape(5) == (5, 2, 4, 8) and layout.v_shape(5) == (5, 2, 4, 6)
    cache = layout.allocate(cpu_platform, num_layers=3, num_pages=5)
    assert [tuple(t.shape) for t in cache.k] == [(5, 2, 4, 8)] * 3
    assert [tuple(t.shape) for t in cache.v] == [(5, 2, 4, 6)] * 3
    assert all(not t.any() for t in cache.k + cache.v)
    assert layout.bytes_per_page() == 4 * 2 * (8 + 6) * 2


def test_slot_index_addresses_the_same_token_in_both_orders():
    g = torch.Generator().manual_seed(0)
    pages, page, heads, dim = 6, 4, 3, 5
    nhd = KVLayout(page, heads, dim, dim, torch.float32)
    hnd = KVLayout(page, heads, dim, dim, torch.float32, head_major=True)
    values = torch.randn((pages * page, heads, dim), generator=g)
    slot_ordered = values.clone()
    head_major = values.view(pages, page, heads, dim).transpose(1, 2).contiguous()
    assert head_major[2, 1, 3].equal(values[2 * page + 3, 1])
    slots = torch.tensor([0, 7, 8, 23, 13])
    assert slot_ordered[nhd.slot_index(slots)].equal(values[slots])
    assert head_major[hnd.slot_index(slots)].equal(values[slots])
    new = torch.randn((len(slots), heads, dim), generator=g)
    head_major[hnd.slot_index(slots)] = new
    slot_ordered[nhd.slot_index(slots)] = new
    every = torch.arange(pages * page)
    assert head_major[hnd.slot_index(every)].equal(slot_ordered)


def test_head_major_and_interleaved_exclude_each_other():
    with pytest.raises(ValueError, match="either head_major"):
        KVLayout(4, 2, 8, 8, torch.float32, interleaved=True, head_major=True)
