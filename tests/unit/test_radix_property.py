"""Property-based tests of the radix prefix cache against a reference model.

The test owns a fixed pool of page ids (a toy free list). The reference model is a dict from
(salt, page-aligned prefix) to the page holding that prefix's last page of tokens; the first
insert of a prefix wins. Requests follow the scheduler's pattern: match, lock, allocate pages
for the rest, insert, free the returned duplicates, unlock.
"""

from __future__ import annotations

from anyware.memory.eviction import make_policy
from anyware.memory.radix_cache import MatchResult, RadixCache
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

POOL = 40
STEMS = [(), (0, 0, 0, 0), (0, 0, 1, 1, 2, 2, 0, 0), (1, 2, 1, 2, 1, 2)]
sequences = st.builds(
    lambda stem, tail: list(stem) + tail,
    st.sampled_from(STEMS),
    st.lists(st.integers(0, 2), max_size=8),
)
salts = st.sampled_from([None, "a"])


class RadixMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.cache: RadixCache | None = None
        self.free: list[int] = list(range(POOL))
        self.model: dict[tuple[str | None, tuple[int, ...]], int] = {}
        self.owner: dict[int, tuple[str | None, tuple[int, ...]]] = {}
        self.active: list[tuple[str | None, list[int], MatchResult]] = []

    # ------------------------------------------------------------ model helpers

    def on_free(self, pages: list[int]) -> None:
        locked = self.locked_set()
        for p in pages:
            assert p not in self.free, f"page {p} freed twice"
            assert p in self.owner, f"page {p} freed but not cached"
            assert p not in locked, f"locked page {p} freed"
            del self.model[self.owner.pop(p)]
            self.free.append(p)

    def locked_set(self) -> set[int]:
        return {p for _, _, m in self.active for p in m.pages}

    def longest(self, salt, seq, limit: int) -> int:
        """Pages of the longest modelled prefix of seq[:limit]."""
        ps, k = self.ps, 0
        while (k + 1) * ps <= limit and (salt, tuple(seq[: (k + 1) * ps])) in self.model:
            k += 1
        return k

    def model_pages(self, salt, seq, k: int) -> list[int]:
        return [self.model[(salt, tuple(seq[: (i + 1) * self.ps]))] for i in range(k)]

    def alloc(self, n: int) -> list[int] | None:
        if n > len(self.free):
            self.cache.evict(n - len(self.free))
        if n > len(self.free):
            return None
        pages, self.free = self.free[:n], self.free[n:]
        return pages

    def record(self, salt, seq, pages: list[int], start: int) -> None:
        for i in range(start, len(seq) // self.ps):
            key = (salt, tuple(seq[: (i + 1) * self.ps]))
            assert key not in self.model
            self.model[key] = pages[i]
            self.owner[pages[i]] = key

    # ------------------------------------------------------------ rules

    @initialize(ps=st.sampled_from([1, 2, 4]), policy=st.sampled_from(["lru", "lfu", "fifo"]))
    def setup(self, ps: int, policy: str) -> None:
        self.ps = ps
        self.cache = RadixCache(ps, self.on_free, make_policy(policy))

    @rule(seq=sequences, salt=salts)
    def insert_private(self, seq, salt) -> None:
        """Insert with all-new pages (plus a partly filled last page the cache must ignore)."""
        n = len(seq) // self.ps
        extra = 1 if len(seq) % self.ps else 0
        pages = self.alloc(n + extra)
        if pages is None:
            return
        existing = self.longest(salt, seq, n * self.ps)
        r = self.cache.insert(seq, pages, salt)
        assert r.num_existing_tokens == existing * self.ps
        assert r.duplicate_pages == pages[:existing]
        self.free.extend(r.duplicate_pages + pages[n:])
        self.record(salt, seq, pages, existing)

    @rule(seq=sequences, salt=salts, cap=st.booleans())
    def start_request(self, seq, salt, cap) -> None:
        limit = len(seq) - 1 if cap else len(seq)
        max_tokens = limit if cap else None
        k = self.longest(salt, seq, max(limit, 0))
        assert self.cache.peek_prefix_len(seq, salt, max_tokens) == k * self.ps
        m = self.cache.match_prefix(seq, salt, max_tokens)
        assert m.num_tokens == k * self.ps
        assert m.pages == self.model_pages(salt, seq, k)
        self.cache.lock(m.node)
        self.active.append((salt, seq, m))

    @precondition(lambda self: self.active)
    @rule(index=st.integers(0, 100), insert=st.booleans())
    def finish_request(self, index, insert) -> None:
        salt, seq, m = self.active[index % len(self.active)]
        n, k = len(seq) // self.ps, len(m.pages)
        fresh = self.alloc(n - k) if insert else None
        if fresh is not None:
            existing = self.longest(salt, seq, n * self.ps)
            assert existing >= k
            r = self.cache.insert(seq, m.pages + fresh, salt)
            assert r.num_existing_tokens == existing * self.ps
            assert r.duplicate_pages == fresh[: existing - k]
            self.free.extend(r.duplicate_pages)
            self.record(salt, seq, m.pages + fresh, existing)
        self.active.remove((salt, seq, m))
        self.cache.unlock(m.node)

    @rule(num=st.integers(0, 12))
    def evict(self, num) -> None:
        evictable = self.cache.evictable_pages
        assert self.cache.evict(num) == min(num, evictable)

    # ------------------------------------------------------------ invariants

    @invariant()
    def consistent(self) -> None:
        c = self.cache
        if c is None:
            return
        c.check_invariants()
        assert len(self.free) + c.evictable_pages + c.locked_pages == POOL
        assert c.total_cached_pages == len(self.model)
        assert c.locked_pages == len(self.locked_set())
        for salt, prefix in self.model:
            if len(prefix) > self.ps:
                assert (salt, prefix[: -self.ps]) in self.model, "cache lost an inner page"
        for salt, seq, m in self.active:
            assert self.model_pages(salt, seq, len(m.pages)) == m.pages


RadixMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRadixCacheModel = RadixMachine.TestCase
