"""The radix prefix cache: a radix tree over token ids, in whole KV pages.

Each edge of the tree holds a token sequence whose length is a multiple of ``page_size`` and
the ids of the KV pages that hold those tokens (one page id per ``page_size`` tokens). A path
from a root to a node spells a cached, page-aligned prefix; the concatenated page lists along
that path are the KV pages of that prefix. Only whole pages are ever cached.

Page ownership (the contract with the page allocator and the scheduler):

* A page id the cache holds (``total_cached_pages`` of them) is owned by the cache until the
  cache hands it back through the ``free_pages`` callback (from ``evict`` or ``reset``).
  Callers may *read* cached pages (attend over them) while they hold a lock on a node whose
  path contains them; they must never free them.
* ``insert`` takes ownership of the caller's pages for the part of the sequence that was not
  cached before; for the part that was already cached it keeps its own pages and returns the
  caller's different page ids as ``InsertResult.duplicate_pages``: the caller still owns those
  and must free them.
* Every cached page is either locked (on the path of a node with a lock held) or evictable,
  so with an allocator that owns the rest: ``free + evictable + locked + in use by requests ==
  total``.

Node handles (``RadixNode``) are opaque. A handle stays valid while a lock on it is held. An
unlocked handle goes stale when ``evict`` or ``reset`` removes or shortens its node; ``lock``
or ``unlock`` on a stale handle raises ``ValueError``. So lock a handle right after
``match_prefix``/``insert`` returns it, before anything can evict. Handles of roots (0-token
matches) are valid forever; locking them does nothing.

Cache salts: every salt value (compared by equality; ``None`` is the default namespace) has its
own root, so sequences under different salts never share a cached page.

Not thread-safe: one scheduler thread owns the cache.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator, Sequence

from anyware.memory.eviction import EvictionPolicy, LRUPolicy
from anyware.memory.radix_node import InsertResult, MatchResult, RadixNode, _copy_stats


class RadixCache:
    """Radix tree of cached KV pages keyed by token ids.

    ``page_size``: tokens per KV page (>= 1).
    ``free_pages``: called with a non-empty list of page ids whenever the cache gives pages
    back (``evict``, ``reset``); it must not call back into the cache.
    ``policy``: eviction order among unlocked leaves; LRU by default.
    """

    def __init__(self, page_size: int, free_pages: Callable[[list[int]], None],
                 policy: EvictionPolicy | None = None) -> None:
        if page_size < 1:
            raise ValueError(f"page_size must be >= 1, got {page_size}")
        self._page_size = page_size
        self._free_pages = free_pages
        self._policy = policy if policy is not None else LRUPolicy()
        self._ids = itertools.count()
        self._clock = 0
        self._evicted_total = 0
        self._empty_root = self._new_node((), [], None, None)
        self._clear()

    # ---------------------------------------------------------------- properties

    @property
    def page_size(self) -> int:
        return self._page_size

    @property
    def policy(self) -> EvictionPolicy:
        return self._policy

    @property
    def evictable_pages(self) -> int:
        """Cached pages on no locked path (all of them can be freed by ``evict``)."""
        return self._evictable_pages

    @property
    def locked_pages(self) -> int:
        """Cached pages on the path of at least one locked node."""
        return self._locked_pages

    @property
    def total_cached_pages(self) -> int:
        """All pages the cache owns: ``evictable_pages + locked_pages``."""
        return self._evictable_pages + self._locked_pages

    @property
    def evicted_pages_total(self) -> int:
        """Pages freed by ``evict`` since construction (monotonic; ``reset`` does not count)."""
        return self._evicted_total

    # ---------------------------------------------------------------- queries

    def match_prefix(self, tokens: Sequence[int], salt: str | None = None,
                     max_tokens: int | None = None) -> MatchResult:
        """Longest cached page-aligned prefix of ``tokens`` under ``salt``.

        The match covers at most ``max_tokens`` tokens (rounded down to a page boundary); the
        cache does not keep the match short of the full sequence by itself: a caller that
        must compute at least one token passes ``max_tokens=len(tokens) - 1``.
        If the match ends inside an edge, the edge is split there (at a page boundary) so
        ``node`` ends exactly at the match. Marks every node on the path as accessed.
        Cost: O(matched length + page_size).
        """
        limit = self._limit(len(tokens), max_tokens)
        root = self._roots.get(salt)
        if root is None or limit == 0:
            return MatchResult([], 0, root if root is not None else self._empty_root)
        pages: list[int] = []
        node, pos = self._walk(root, tuple(tokens[:limit]), limit, pages)
        return MatchResult(pages, pos, node)

    def peek_prefix_len(self, tokens: Sequence[int], salt: str | None = None,
                        max_tokens: int | None = None) -> int:
        """``match_prefix(...).num_tokens`` without side effects (no split, no access update).

        Meant for scheduling policies that rank waiting requests by cached prefix length.
        """
        limit = self._limit(len(tokens), max_tokens)
        root = self._roots.get(salt)
        if root is None or limit == 0:
            return 0
        return self._walk(root, tuple(tokens[:limit]), limit, None)[1]

    # ---------------------------------------------------------------- updates

    def insert(self, tokens: Sequence[int], pages: Sequence[int],
               salt: str | None = None) -> InsertResult:
        """Cache the page-aligned prefix of ``tokens`` held in ``pages``.

        With ``n = len(tokens) // page_size``, ``pages[i]`` holds tokens
        ``[i * page_size, (i + 1) * page_size)`` for ``i < n``; ``len(pages) >= n`` is required
        and ``pages[n:]`` (e.g. a partly filled last page) are ignored and stay the caller's.
        After the call, of ``pages[:n]``: those beyond the already-cached part belong to the
        cache; those of the already-cached part are either the cache's own page at that
        position (the caller got it from ``match_prefix``) or listed in
        ``duplicate_pages`` and still the caller's. Newly cached pages are unlocked (evictable).
        Splits an edge if the cached part ends inside it; marks every node on the path as
        accessed (a new node counts as accessed once). ``node`` is not locked.
        Raises ``ValueError`` (before taking any page) if ``pages`` is too short, repeats a
        page id, or gives a page id the cache already holds at another position.
        """
        ps = self._page_size
        n = len(tokens) // ps
        if len(pages) < n:
            raise ValueError(f"insert: {len(tokens)} tokens need {n} pages, got {len(pages)}")
        if n == 0:
            root = self._roots.get(salt)
            return InsertResult(0, [], root if root is not None else self._empty_root)
        limit = n * ps
        toks = tuple(tokens[:limit])
        root = self._roots.get(salt)
        if root is None:
            root = self._roots[salt] = self._new_node((), [], None, salt)
        cached: list[int] = []
        node, pos = self._walk(root, toks, limit, cached)
        k = pos // ps
        duplicates = [p for p, c in zip(pages[:k], cached) if p != c]
        new_pages = list(pages[k:n])
        given = duplicates + new_pages
        if len(set(given)) != len(given):
            raise ValueError(f"insert: page ids repeat in {list(pages[:n])}")
        clash = [p for p in given if p in self._cached]
        if clash:
            raise ValueError(f"insert: pages {clash} are already cached at other positions")
        if new_pages:
            leaf = self._new_node(toks[pos:], new_pages, node, salt, self._clock)
            node.children[leaf.key[:ps]] = leaf
            self._cached.update(new_pages)
            self._evictable_pages += len(new_pages)
            self._refresh(node)
            self._refresh(leaf)
            node = leaf
        return InsertResult(pos, duplicates, node)

    def lock(self, node: RadixNode) -> None:
        """Protect ``node`` and its ancestors from eviction (one reference each).

        Every ``lock`` needs exactly one matching ``unlock`` of the same handle.
        """
        self._check_handle(node)
        while node.parent is not None:
            if node.lock_ref == 0:
                self._evictable_pages -= len(node.pages)
                self._locked_pages += len(node.pages)
                self._leaves.discard(node)
            node.lock_ref += 1
            node = node.parent

    def unlock(self, node: RadixNode) -> None:
        """Release one reference taken by ``lock(node)``; raises ``ValueError`` if none is held."""
        self._check_handle(node)
        if node.parent is not None and node.lock_ref <= 0:
            raise ValueError(f"unlock of a node that is not locked: {node!r}")
        while node.parent is not None:
            node.lock_ref -= 1
            if node.lock_ref == 0:
                self._locked_pages -= len(node.pages)
                self._evictable_pages += len(node.pages)
                self._refresh(node)
            node = node.parent

    def evict(self, num_pages: int) -> int:
        """Free up to ``num_pages`` unlocked cached pages, in policy order; return how many.

        Repeatedly takes the unlocked leaf with the smallest policy priority (ties: the node
        object created first) and frees its pages; a parent left as an unlocked leaf becomes a candidate. If
        a leaf holds more pages than still needed, only its last pages are freed (the node is
        replaced by a shorter one), so exactly ``min(num_pages, evictable_pages)`` pages are
        freed. Calls ``free_pages`` once with the freed ids (each node's pages in sequence
        order, nodes in eviction order) when any were freed.
        """
        if num_pages <= 0 or not self._leaves:
            return 0
        prio = self._policy.priority
        freed: list[int] = []
        while self._heap and len(freed) < num_pages:
            key, _, leaf = heapq.heappop(self._heap)
            if leaf not in self._leaves or key != prio(leaf):
                continue  # a stale entry: the leaf is gone, or has a newer one
            need = num_pages - len(freed)
            if len(leaf.pages) > need:
                freed.extend(leaf.pages[-need:])
                self._trim(leaf, need)
                break
            freed.extend(leaf.pages)
            self._remove_leaf(leaf)  # a parent left an evictable leaf gets its entry
        self._cached.difference_update(freed)
        self._evictable_pages -= len(freed)
        self._evicted_total += len(freed)
        if freed:
            self._free_pages(freed)
        return len(freed)

    def reset(self) -> None:
        """Drop every cached prefix and give all cached pages to ``free_pages`` (one call).

        Raises ``RuntimeError`` (changing nothing) while any lock is held. All handles except
        roots go stale. ``evicted_pages_total`` is kept.
        """
        if self._locked_pages:
            raise RuntimeError(f"reset with {self._locked_pages} locked pages")
        pages: list[int] = []
        for root in self._roots.values():
            for node in self._iter_nodes(root):
                if node is not root:
                    node.detached = True
                    pages.extend(node.pages)
        self._clear()
        if pages:
            self._free_pages(pages)

    # ---------------------------------------------------------------- checks

    def check_invariants(self) -> None:
        """Verify internal consistency; raise ``AssertionError`` describing the first breach."""

        def fail(msg: str) -> None:
            raise AssertionError(f"RadixCache invariant: {msg}")

        ps = self._page_size
        seen: set[int] = set()
        evictable = locked = 0
        leaves: set[RadixNode] = set()
        for salt, root in self._roots.items():
            if root.parent is not None or root.key or root.pages or root.salt != salt:
                fail(f"bad root for salt {salt!r}: {root!r}")
            for node in self._iter_nodes(root):
                for first, child in node.children.items():
                    if child.parent is not node or child.key[:ps] != first:
                        fail(f"child {child!r} misfiled under {node!r}")
                if node is root:
                    continue
                if node.detached or node.salt != salt:
                    fail(f"stale or foreign node in tree: {node!r}")
                if not node.key or len(node.key) % ps or len(node.pages) != len(node.key) // ps:
                    fail(f"edge not whole pages: {node!r}")
                below = sum(c.lock_ref for c in node.children.values())
                if node.lock_ref < below or node.lock_ref < 0:
                    fail(f"lock_ref {node.lock_ref} < children's {below}: {node!r}")
                for p in node.pages:
                    if p in seen:
                        fail(f"page {p} cached twice")
                    seen.add(p)
                if node.lock_ref:
                    locked += len(node.pages)
                else:
                    evictable += len(node.pages)
                    if not node.children:
                        leaves.add(node)
        if seen != self._cached:
            fail(f"page set mismatch: tree has {len(seen)}, index {len(self._cached)}")
        if (evictable, locked) != (self._evictable_pages, self._locked_pages):
            fail(f"counters (evictable, locked) = {(self._evictable_pages, self._locked_pages)}"
                 f", tree says {(evictable, locked)}")
        if leaves != self._leaves:
            fail("evictable leaf index out of date")
        prio = self._policy.priority
        if {n for key, _, n in self._heap if n in leaves and key == prio(n)} != leaves:
            fail("eviction heap lacks an evictable leaf at its current priority")

    def __repr__(self) -> str:
        return (f"RadixCache(page_size={self._page_size}, policy={self._policy.name}, "
                f"evictable={self._evictable_pages}, locked={self._locked_pages})")

    # ---------------------------------------------------------------- internals

    def _clear(self) -> None:
        self._roots: dict[str | None, RadixNode] = {}
        self._leaves: set[RadixNode] = set()  # unlocked non-root nodes without children
        # (priority, node_id, node) of every leaf at its current priority, and stale entries
        # (nodes no longer leaves, or since touched) that ``evict`` skips: a lazy heap
        self._heap: list[tuple[tuple[int, ...], int, RadixNode]] = []
        self._cached: set[int] = set()  # every cached page id
        self._evictable_pages = 0
        self._locked_pages = 0

    def _new_node(self, key: tuple[int, ...], pages: list[int], parent: RadixNode | None,
                  salt: str | None, now: int = 0) -> RadixNode:
        return RadixNode(key, pages, parent, salt, next(self._ids), now)

    def _limit(self, n: int, max_tokens: int | None) -> int:
        if max_tokens is not None:
            n = min(n, max(max_tokens, 0))
        return n - n % self._page_size

    def _common(self, key: tuple[int, ...], toks: tuple[int, ...], pos: int, limit: int) -> int:
        """Tokens (whole pages) shared by ``key`` and ``toks[pos:limit]``; first page known equal."""
        n = min(len(key), limit - pos)
        if key[:n] == toks[pos:pos + n]:
            return n
        ps, i = self._page_size, self._page_size
        while i < n and key[i:i + ps] == toks[pos + i:pos + i + ps]:
            i += ps
        return i

    def _walk(self, root: RadixNode, toks: tuple[int, ...], limit: int,
              pages_out: list[int] | None) -> tuple[RadixNode, int]:
        """Descend along ``toks[:limit]``; return the node ending at the match and its length.

        With ``pages_out`` (a list), also: split the last edge if the match ends inside it,
        advance the clock, touch every node on the path and append their pages. With ``None``,
        change nothing (the returned node may then end above the match).
        """
        self._clock += pages_out is not None
        ps, node, pos, now = self._page_size, root, 0, self._clock
        while pos < limit:
            child = node.children.get(toks[pos:pos + ps])
            if child is None:
                break
            n = self._common(child.key, toks, pos, limit)
            if n < len(child.key):
                if pages_out is None:
                    return node, pos + n
                child = self._split(child, n)
            if pages_out is not None:
                child.last_access, child.access_count = now, child.access_count + 1
                pages_out.extend(child.pages)
                if child in self._leaves:  # its priority changed: a new heap entry
                    self._push(child)
            node, pos = child, pos + n
        return node, pos

    def _split(self, child: RadixNode, n: int) -> RadixNode:
        """Cut ``child``'s edge after ``n`` tokens; return the new upper node (same stats)."""
        ps, parent = self._page_size, child.parent
        assert parent is not None
        upper = self._new_node(child.key[:n], child.pages[:n // ps], parent, child.salt)
        _copy_stats(child, upper)
        upper.lock_ref = child.lock_ref
        child.key = child.key[n:]
        child.pages = child.pages[n // ps:]
        child.parent = upper
        upper.children[child.key[:ps]] = child
        parent.children[upper.key[:ps]] = upper
        return upper

    def _trim(self, leaf: RadixNode, k: int) -> None:
        """Replace unlocked ``leaf`` by a node without its last ``k`` pages (old handle stale)."""
        ps, parent = self._page_size, leaf.parent
        assert parent is not None and not leaf.children and leaf.lock_ref == 0
        short = self._new_node(leaf.key[:-k * ps], leaf.pages[:-k], parent, leaf.salt)
        _copy_stats(leaf, short)
        parent.children[short.key[:ps]] = short
        leaf.detached = True
        leaf.parent = None
        self._leaves.discard(leaf)
        self._leaves.add(short)
        self._push(short)

    def _remove_leaf(self, leaf: RadixNode) -> RadixNode:
        """Unlink unlocked ``leaf``; return its former parent."""
        parent = leaf.parent
        assert parent is not None and not leaf.children and leaf.lock_ref == 0
        del parent.children[leaf.key[:self._page_size]]
        leaf.detached = True
        leaf.parent = None
        self._leaves.discard(leaf)
        if parent.parent is None:
            if not parent.children and parent.salt is not None:
                del self._roots[parent.salt]
        else:
            self._refresh(parent)
        return parent

    def _refresh(self, node: RadixNode) -> None:
        """Recompute whether ``node`` is an evictable leaf."""
        if node.parent is not None and not node.children and node.lock_ref == 0:
            if node not in self._leaves:
                self._leaves.add(node)
                self._push(node)
        else:
            self._leaves.discard(node)

    def _push(self, leaf: RadixNode) -> None:
        """Add ``leaf``'s entry at its current priority; rebuild the heap from the leaves when
        stale entries outnumber them (amortised O(1) per push)."""
        heap = self._heap
        if len(heap) > 2 * len(self._leaves) + 64:
            prio = self._policy.priority
            heap[:] = [(prio(n), n.node_id, n) for n in self._leaves if n is not leaf]
            heapq.heapify(heap)
        heapq.heappush(heap, (self._policy.priority(leaf), leaf.node_id, leaf))

    def _check_handle(self, node: RadixNode) -> None:
        if not isinstance(node, RadixNode):
            raise TypeError(f"expected a RadixNode handle, got {type(node).__name__}")
        if node.detached:
            raise ValueError(f"stale handle (its node was evicted or reset): {node!r}")

    @staticmethod
    def _iter_nodes(root: RadixNode) -> Iterator[RadixNode]:
        stack = [root]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(node.children.values())
