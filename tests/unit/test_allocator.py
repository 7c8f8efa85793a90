"""Page allocator, page table and KV pool: exact page ids and accounting."""

import pytest
import torch
from anyware.memory import KVPool, OutOfPagesError, PageAllocator, PageTable, pages_for_budget
from anyware.plugin import KVLayout
from anyware.runtime import load_platform


def test_allocates_lowest_ids_first_and_reuses_freed():
    a = PageAllocator(8)
    assert a.capacity == 7 and a.num_free == 7
    assert a.alloc(3) == [1, 2, 3]
    assert a.alloc(2) == [4, 5]
    a.free([2, 4])
    assert a.num_free == 4 and a.num_used == 3
    assert a.alloc(3) == [2, 4, 6]


def test_out_of_pages_takes_nothing():
    a = PageAllocator(4)
    a.alloc(2)
    with pytest.raises(OutOfPagesError):
        a.alloc(2)
    assert a.num_free == 1


@pytest.mark.parametrize("bad", [[0], [9], [1]])
def test_double_free_and_foreign_ids_raise(bad):
    a = PageAllocator(8)
    a.alloc(0)
    with pytest.raises(ValueError):
        a.free(bad)


def test_page_table_rows_and_batched_updates():
    t = PageTable(4, 6, torch.device("cpu"))
    r0, r1 = t.acquire_row(), t.acquire_row()
    assert (r0, r1) == (0, 1)
    t.set_pages(r0, 0, [5, 7])
    t.set_pages(r1, 0, [3])
    t.set_pages(r0, 2, [9])
    assert t.rows([r1, r0], 3).tolist() == [[3, 0, 0], [5, 7, 9]]
    t.release_row(r0)
    assert t.acquire_row() == r0
    with pytest.raises(ValueError):
        t.set_pages(r1, 5, [1, 2])


def test_kv_pool_allocates_through_platform_in_layout():
    platform = load_platform("cpu")
    platform.init_device()
    layout = KVLayout(page_size=4, num_kv_heads=2, head_dim=8, v_head_dim=8, dtype=torch.float16)
    assert layout.bytes_per_page() == 4 * 2 * 16 * 2
    pages = pages_for_budget(10_000, layout, num_layers=3)
    assert pages == 10_000 // (256 * 3)
    pool = KVPool(platform, layout, num_layers=3, num_pages=pages)
    assert len(pool.cache.k) == 3 and pool.cache.k[0].shape == (pages * 4, 2, 8)
    assert pool.cache.v[2].dtype == torch.float16 and pool.bytes <= 10_000
