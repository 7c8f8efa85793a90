"""Scripted tests of the radix prefix cache: exact page ids, split points and eviction order."""

from __future__ import annotations

import pytest
from anyware.memory.eviction import (
    FIFOPolicy,
    LFUPolicy,
    LRUPolicy,
    make_policy,
    policy_names,
)
from anyware.memory.radix_cache import RadixCache


class Freed:
    """free_pages callback that records each call."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def __call__(self, pages: list[int]) -> None:
        self.calls.append(list(pages))

    @property
    def all(self) -> list[int]:
        return [p for call in self.calls for p in call]


def make(page_size: int, policy=None) -> tuple[RadixCache, Freed]:
    freed = Freed()
    return RadixCache(page_size, freed, policy), freed


A = list(range(100, 112))  # 12 tokens = 3 pages of 4


def test_insert_and_match_page_size_4():
    c, freed = make(4)
    r = c.insert(A, [10, 11, 12])
    assert (r.num_existing_tokens, r.duplicate_pages) == (0, [])
    m = c.match_prefix([*A, 7])
    assert (m.pages, m.num_tokens) == ([10, 11, 12], 12)
    assert m.node is r.node
    # a sequence that stops mid-page only matches whole pages
    assert c.match_prefix(A[:11]).pages == [10, 11]
    # the caller's "compute at least one token" cap
    m = c.match_prefix(A, max_tokens=len(A) - 1)
    assert (m.pages, m.num_tokens) == ([10, 11], 8)
    assert c.match_prefix(A, max_tokens=3).num_tokens == 0
    assert c.match_prefix([1, 2, 3, 4, 5]).num_tokens == 0
    assert c.total_cached_pages == c.evictable_pages == 3
    assert freed.calls == []
    c.check_invariants()


def test_shared_prefix_returns_duplicates_and_splits_at_page_boundary():
    c, _ = make(4)
    c.insert(A, [10, 11, 12])
    b = A[:8] + list(range(200, 208))
    r = c.insert(b, [20, 21, 22, 23])
    assert (r.num_existing_tokens, r.duplicate_pages) == (8, [20, 21])
    assert c.match_prefix(b).pages == [10, 11, 22, 23]
    assert c.match_prefix(A).pages == [10, 11, 12]
    assert c.total_cached_pages == 5
    # divergence inside a page: only the whole pages before it are shared
    d = A[:6] + [999] * 6
    assert c.match_prefix(d).pages == [10]
    r = c.insert(d, [30, 31, 32])
    assert (r.num_existing_tokens, r.duplicate_pages) == (4, [30])
    assert c.match_prefix(d).pages == [10, 31, 32]
    assert c.total_cached_pages == 7
    c.check_invariants()


def test_page_size_1():
    c, _ = make(1)
    c.insert([1, 2, 3], [1, 2, 3])
    r = c.insert([1, 2, 4], [4, 5, 6])
    assert (r.num_existing_tokens, r.duplicate_pages) == (2, [4, 5])
    assert c.match_prefix([1, 2, 4, 9]).pages == [1, 2, 6]
    assert c.match_prefix([1, 9]).pages == [1]
    assert c.match_prefix([1, 2, 3], max_tokens=2).pages == [1, 2]
    assert c.total_cached_pages == 4
    c.check_invariants()


def test_reinsert_with_cache_pages_has_no_duplicates():
    c, _ = make(4)
    c.insert(A[:8], [10, 11])
    m = c.match_prefix(A, max_tokens=len(A) - 1)
    assert m.pages == [10, 11]
    r = c.insert(A, [*m.pages, 12])  # the request reused pages 10, 11 and computed page 12
    assert (r.num_existing_tokens, r.duplicate_pages) == (8, [])
    r = c.insert(A, [40, 41, 42])  # full re-insert with private pages: all three come back
    assert (r.num_existing_tokens, r.duplicate_pages) == (12, [40, 41, 42])
    assert c.match_prefix([*A, 0]).pages == [10, 11, 12]
    c.check_invariants()


def test_insert_ignores_partial_last_page_and_short_input():
    c, _ = make(4)
    r = c.insert(A[:10], [10, 11, 12])  # 10 tokens: 2 whole pages; page 12 stays the caller's
    assert r.num_existing_tokens == 0
    assert c.match_prefix(A).pages == [10, 11]
    assert c.total_cached_pages == 2
    r = c.insert(A[:3], [])
    assert (r.num_existing_tokens, r.duplicate_pages) == (0, [])
    c.lock(r.node)  # a root handle: no effect
    assert c.locked_pages == 0
    c.check_invariants()


def test_insert_rejects_bad_pages_without_taking_any():
    c, _ = make(2)
    c.insert([1, 2, 3, 4], [10, 11])
    with pytest.raises(ValueError, match="need 3 pages"):
        c.insert([1, 2, 3, 4, 5, 6], [10, 11])
    with pytest.raises(ValueError, match="already cached"):
        c.insert([7, 8, 9, 9], [10, 12])  # page 10 holds [1, 2]
    with pytest.raises(ValueError, match="already cached"):
        c.insert([1, 2, 3, 4, 5, 6], [11, 10, 12])  # duplicates that are cache pages
    with pytest.raises(ValueError, match="repeat"):
        c.insert([7, 8, 9, 9], [13, 13])
    assert c.total_cached_pages == 2
    c.check_invariants()


def test_lock_protects_path_and_unlock_releases():
    c, freed = make(1)
    c.insert([1, 2, 3], [1, 2, 3])
    c.insert([1, 2, 5, 6], [91, 92, 5, 6])
    m = c.match_prefix([1, 2, 3])
    c.lock(m.node)
    c.lock(m.node)
    assert (c.locked_pages, c.evictable_pages) == (3, 2)
    assert c.evict(10) == 2
    assert freed.calls == [[5, 6]]
    assert c.evict(1) == 0
    c.unlock(m.node)
    assert c.evict(1) == 0  # still one lock
    c.unlock(m.node)
    assert (c.locked_pages, c.evictable_pages) == (0, 3)
    with pytest.raises(ValueError, match="not locked"):
        c.unlock(m.node)
    assert c.evict(1) == 1
    assert freed.calls[-1] == [3]
    c.check_invariants()


def test_stale_handles_raise():
    c, _ = make(1)
    n = c.insert([1, 2, 3], [1, 2, 3]).node
    assert c.evict(1) == 1  # trims the leaf: the old handle is stale
    with pytest.raises(ValueError, match="stale"):
        c.lock(n)
    m = c.match_prefix([1, 2])
    assert m.pages == [1, 2]
    c.evict(2)
    with pytest.raises(ValueError, match="stale"):
        c.unlock(m.node)
    with pytest.raises(TypeError):
        c.lock(object())  # type: ignore[arg-type]


def build_three_leaves(policy) -> tuple[RadixCache, Freed]:
    """Clock 1..7: leaves [3] (used 2x, last t6), [5,6] (used 3x, last t5), [7,8] (2x, t7)."""
    c, freed = make(1, policy)
    c.insert([1, 2, 3], [1, 2, 3])  # t1
    assert c.insert([1, 2, 5, 6], [91, 92, 15, 16]).duplicate_pages == [91, 92]  # t2
    c.insert([7, 8], [7, 8])  # t3
    c.match_prefix([1, 2, 5, 6])  # t4
    c.match_prefix([1, 2, 5, 6])  # t5
    c.match_prefix([1, 2, 3])  # t6
    c.match_prefix([7, 8])  # t7
    c.check_invariants()
    return c, freed


@pytest.mark.parametrize(
    ("policy", "order"),
    [
        (LRUPolicy(), [15, 16, 3, 1, 2, 7, 8]),
        (LFUPolicy(), [3, 7, 8, 15, 16, 1, 2]),
        (FIFOPolicy(), [3, 15, 16, 1, 2, 7, 8]),
    ],
    ids=["lru", "lfu", "fifo"],
)
def test_eviction_order(policy, order):
    c, freed = build_three_leaves(policy)
    assert c.evict(100) == 7
    assert freed.calls == [order]
    assert c.total_cached_pages == 0
    assert c.evicted_pages_total == 7
    c.check_invariants()


@pytest.mark.parametrize(
    ("policy", "first"), [(LRUPolicy(), [15, 16, 3]), (LFUPolicy(), [3, 7, 8])], ids=["lru", "lfu"]
)
def test_eviction_is_exact_and_trims_the_last_leaf(policy, first):
    c, freed = build_three_leaves(policy)
    assert c.evict(3) == 3
    assert freed.calls == [first]
    assert c.evictable_pages == 4
    c.check_invariants()
    assert c.evict(0) == 0
    assert len(freed.calls) == 1  # no call when nothing is freed


def test_partial_eviction_keeps_the_head_of_the_leaf():
    c, freed = make(2)
    c.insert([1, 2, 3, 4, 5, 6], [1, 2, 3])
    assert c.evict(1) == 1
    assert freed.calls == [[3]]
    m = c.match_prefix([1, 2, 3, 4, 5, 6])
    assert (m.pages, m.num_tokens) == ([1, 2], 4)
    c.check_invariants()


def test_lru_skips_locked_and_match_updates_recency():
    c, freed = make(1)
    a = c.insert([1, 1], [1, 2]).node
    c.insert([2, 2], [3, 4])
    c.insert([3, 3], [5, 6])
    c.lock(a)
    c.match_prefix([2, 2])  # [2,2] is now more recent than [3,3]
    assert c.evict(2) == 2
    assert freed.calls == [[5, 6]]
    assert c.evict(2) == 2
    assert freed.calls[-1] == [3, 4]
    assert c.evict(2) == 0
    c.unlock(a)
    c.check_invariants()


def test_peek_has_no_side_effects():
    c, freed = make(2)
    c.insert([1, 2, 3, 4], [1, 2])
    c.insert([5, 6], [3])
    assert c.peek_prefix_len([1, 2, 3, 9]) == 2
    assert c.peek_prefix_len([1, 2, 3, 4, 5]) == 4
    assert c.peek_prefix_len([1, 2, 3, 4], max_tokens=3) == 2
    assert c.peek_prefix_len([1, 2], salt="x") == 0
    c.evict(2)  # LRU ignores peeks: [1,2,3,4] (older) goes
    assert freed.calls == [[1, 2]]
    c.check_invariants()


def test_salts_never_share():
    c, freed = make(2)
    c.insert([1, 2, 3, 4], [1, 2])
    r = c.insert([1, 2, 3, 4], [3, 4], salt="tenant-a")
    assert (r.num_existing_tokens, r.duplicate_pages) == (0, [])
    assert c.match_prefix([1, 2, 3, 4, 5]).pages == [1, 2]
    assert c.match_prefix([1, 2, 3, 4, 5], salt="tenant-a").pages == [3, 4]
    assert c.match_prefix([1, 2, 3, 4, 5], salt="tenant-b").num_tokens == 0
    assert c.match_prefix([1, 2, 3, 4, 5], salt="").num_tokens == 0
    c.lock(c.match_prefix([1, 2, 3, 4]).node)
    assert c.evict(5) == 2
    assert freed.calls == [[3, 4]]
    assert c.match_prefix([1, 2, 3, 4], salt="tenant-a").num_tokens == 0
    c.check_invariants()
    r = c.insert([1, 2], [9], salt="tenant-a")  # the namespace comes back on demand
    assert c.match_prefix([1, 2, 3], salt="tenant-a").pages == [9]
    c.check_invariants()


def test_reset_frees_everything_once():
    c, freed = make(2)
    c.insert([1, 2, 3, 4], [1, 2])
    n = c.insert([1, 2, 5, 6], [7, 3], salt="s").node
    c.lock(n)
    with pytest.raises(RuntimeError, match="locked"):
        c.reset()
    c.unlock(n)
    c.reset()
    assert len(freed.calls) == 1 and sorted(freed.calls[0]) == [1, 2, 3, 7]
    assert (c.total_cached_pages, c.evicted_pages_total) == (0, 0)
    assert c.match_prefix([1, 2, 3, 4, 5]).num_tokens == 0
    with pytest.raises(ValueError, match="stale"):
        c.lock(n)
    c.check_invariants()


def test_check_invariants_detects_corruption():
    c, _ = make(2)
    n = c.insert([1, 2, 3, 4], [1, 2]).node
    c.check_invariants()
    n.pages.append(99)
    with pytest.raises(AssertionError, match="whole pages"):
        c.check_invariants()
    n.pages.pop()
    n.lock_ref = 1  # lock count changed behind the counters' back
    with pytest.raises(AssertionError, match="counters"):
        c.check_invariants()


def test_policy_factory():
    assert policy_names() == ["fifo", "lfu", "lru"]
    assert isinstance(make_policy("LRU"), LRUPolicy)
    assert isinstance(make_policy("lfu"), LFUPolicy)
    with pytest.raises(ValueError, match="known: fifo, lfu, lru"):
        make_policy("random")
    with pytest.raises(ValueError, match="page_size"):
        RadixCache(0, lambda pages: None)


@pytest.mark.parametrize("policy", [LRUPolicy(), LFUPolicy(), FIFOPolicy()],
                         ids=["lru", "lfu", "fifo"])
def test_each_eviction_takes_the_least_leaf_after_touches_and_locks(policy):
    """The cache keeps its evictable leaves in a lazy heap: touches (match_prefix, insert),
    lock/unlock and trims leave stale entries behind. Every single-page eviction must still
    take the leaf a full scan would pick: the smallest policy priority, oldest node first."""
    import random

    rng = random.Random(0)
    c, freed = make(2, policy)
    seqs = [[1000 * i + t for t in range(6)] for i in range(12)]
    for i, s in enumerate(seqs):
        c.insert(s, [3 * i + 1, 3 * i + 2, 3 * i + 3])
    held = []
    for step in range(60):
        op = rng.randrange(4)
        s = rng.choice(seqs)
        if op == 0:  # touch a leaf (or part of it, splitting the edge)
            c.match_prefix(s[: rng.choice([2, 4, 6])])
        elif op == 1:
            m = c.match_prefix(s)
            if m.num_tokens:
                c.lock(m.node)
                held.append(m.node)
        elif op == 2 and held:
            c.unlock(held.pop(rng.randrange(len(held))))
        elif c.evictable_pages:
            prio = c.policy.priority
            best = min(c._leaves, key=lambda n: (prio(n), n.node_id))
            assert c.evict(1) == 1
            assert freed.all[-1] == best.pages[-1], step
        c.check_invariants()


def test_lazy_heap_stays_bounded_under_lock_cycles():
    c, freed = make(2)
    nodes = [c.insert([i, i], [i + 1]).node for i in range(10)]
    for _ in range(500):
        for n in nodes:
            c.lock(n)
            c.unlock(n)
    assert len(c._heap) <= 2 * len(c._leaves) + 65
    c.check_invariants()
    assert c.evict(3) == 3
    assert freed.all == [1, 2, 3]  # the oldest three leaves, oldest first
    c.check_invariants()
