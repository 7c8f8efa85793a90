"""`KVManager`: a request's KV pages across the allocator, the page table and the optional
radix prefix cache. The scheduler decides *who* runs; this decides *where* their KV lives.
It is the only writer of a request's KV fields (``row``, ``pages``, ``num_computed``,
``cache_node``, ``num_cache_pages``, ``num_unverified``).

Only final tokens reach the prefix cache: the KV of draft tokens a verify step has not judged
(``num_unverified``) is never inserted, and ``truncate`` releases the slots of rejected ones.

Invariant (``check``): free + evictable + locked-in-cache + owned-by-requests == capacity.
"""

from __future__ import annotations

from anyware.memory import OutOfPagesError, PageAllocator, PageTable
from anyware.request.request import Request


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


class KVManager:
    def __init__(self, allocator: PageAllocator, page_table: PageTable, page_size: int,
                 prefix_cache=None) -> None:
        self.allocator = allocator
        self.page_table = page_table
        self.page_size = page_size
        self.cache = prefix_cache  # a RadixCache or None
        self.owned_pages = 0  # pages held by requests, not by the cache

    # ------------------------------------------------------------ capacity
    @property
    def available_pages(self) -> int:
        """Pages obtainable now: free plus evictable cache pages."""
        return self.allocator.num_free + (self.cache.evictable_pages if self.cache else 0)

    def uncovered(self, reqs: list[Request], ahead: int = 1) -> list[Request]:
        """Those of ``reqs`` whose pages do not cover position ``num_computed + ahead - 1``:
        the only ones for which ``reserve(req, req.num_computed + ahead)`` does anything."""
        ps = self.page_size
        return [r for r in reqs if r.num_computed + ahead > len(r.pages) * ps]

    def pages_needed(self, req: Request, upto_tokens: int) -> int:
        return max(0, _cdiv(upto_tokens, self.page_size) - len(req.pages))

    # ------------------------------------------------------------ admission
    @staticmethod
    def _match_limit(req: Request) -> int:
        """The most tokens a cached prefix may cover: all but the last, and none past the
        first prompt position whose prompt logprob is still to be computed (a cached prefix
        has no logits, so those positions are recomputed)."""
        if req.prompt_lp_pending:
            return min(req.seq_len - 1, req.prompt_lp_next)
        return req.seq_len - 1

    def cached_prefix_len(self, req: Request) -> int:
        if self.cache is None:
            return 0
        return self.cache.peek_prefix_len(req.all_ids, salt=req.params.cache_salt,
                                          max_tokens=self._match_limit(req))

    def admit(self, req: Request) -> None:
        """Give ``req`` a page-table row and its cached prefix (locked)."""
        req.row = self.page_table.acquire_row()
        req.pages, req.num_computed, req.num_cache_pages = [], 0, 0
        if self.cache is not None:
            m = self.cache.match_prefix(req.all_ids, salt=req.params.cache_salt,
                                        max_tokens=self._match_limit(req))
            if m.num_tokens:
                self.cache.lock(m.node)
                req.cache_node = m.node
                req.pages = list(m.pages)
                req.num_computed = m.num_tokens
                req.num_cache_pages = len(m.pages)
                self.page_table.set_pages(req.row, 0, req.pages)

    def reserve(self, req: Request, upto_tokens: int) -> bool:
        """Make sure pages exist for positions ``< upto_tokens``; evict cache pages if needed.
        Returns False (taking nothing) when memory is short."""
        if upto_tokens <= len(req.pages) * self.page_size:  # the common case: pages cover it
            return True
        need = _cdiv(upto_tokens, self.page_size) - len(req.pages)
        if need > self.available_pages:
            return False
        short = need - self.allocator.num_free
        if short > 0:
            self.cache.evict(short)
        try:
            pages = self.allocator.alloc(need)
        except OutOfPagesError:
            return False
        self.page_table.set_pages(req.row, len(req.pages), pages)
        req.pages.extend(pages)
        self.owned_pages += need
        return True

    # ------------------------------------------------------------ progress
    def advance(self, req: Request, num_computed: int, unverified: int = 0) -> None:
        """A launched step computes (or queues) KV up to ``num_computed`` positions, the last
        ``unverified`` of them for draft tokens not judged yet. Pages must have been
        reserved for them (``reserve``)."""
        req.num_computed, req.num_unverified = num_computed, unverified

    def advance_decodes(self, reqs: list[Request], prefix_lens: list[int]) -> None:
        """:meth:`advance` of each of ``reqs`` by one final token past ``prefix_lens[i]``."""
        for req, pre in zip(reqs, prefix_lens):
            req.num_computed, req.num_unverified = pre + 1, 0

    def truncate(self, req: Request, num_computed: int) -> None:
        """Keep the KV of the first ``num_computed`` positions (all final) and release the
        slots past them: whole pages beyond the last one needed go back to the allocator
        (pages shared with the cache never lie past final tokens)."""
        if num_computed > req.num_computed:
            raise ValueError(f"cannot truncate {req.rid} from {req.num_computed} up to {num_computed}")
        req.num_computed, req.num_unverified = num_computed, 0
        keep = max(_cdiv(num_computed, self.page_size), req.num_cache_pages)
        if keep < len(req.pages):
            self.allocator.free(req.pages[keep:])
            self.owned_pages -= len(req.pages) - keep
            del req.pages[keep:]

    # ------------------------------------------------------------ caching progress
    def _insert(self, req: Request):
        """Insert ``req``'s computed full pages of final tokens into the cache; free pages the
        cache already had from another request and switch ``req`` to the cache's copies."""
        n_full = (req.num_computed - req.num_unverified) // self.page_size
        if n_full <= req.num_cache_pages:
            return None, n_full
        tokens = req.all_ids[: n_full * self.page_size]
        res = self.cache.insert(tokens, req.pages[:n_full], salt=req.params.cache_salt)
        return (res, list(res.duplicate_pages)), n_full

    def cache_progress(self, req: Request) -> None:
        """After a prefill chunk: share the computed prefix through the cache right away."""
        if self.cache is None:
            return
        out, n_full = self._insert(req)
        if out is None:
            return
        res, dup = out
        if dup:
            canonical = self.cache.match_prefix(req.all_ids[: n_full * self.page_size],
                                                salt=req.params.cache_salt).pages
            start = req.num_cache_pages
            req.pages[start:n_full] = canonical[start:n_full]
            self.page_table.set_pages(req.row, start, req.pages[start:n_full])
            self.allocator.free(dup)
        self.owned_pages -= n_full - req.num_cache_pages
        self.cache.lock(res.node)
        if req.cache_node is not None:
            self.cache.unlock(req.cache_node)
        req.cache_node, req.num_cache_pages = res.node, n_full

    # ------------------------------------------------------------ release
    def release(self, req: Request, cache_it: bool = True) -> None:
        """Return ``req``'s pages: full computed pages go to the cache (when enabled and
        ``cache_it``), everything else to the allocator. Resets the request's KV state."""
        own_from = req.num_cache_pages
        if self.cache is not None and cache_it:
            out, n_full = self._insert(req)
            if out is not None:
                _, dup = out
                self.allocator.free(dup + req.pages[n_full:])
                self.owned_pages -= len(req.pages) - own_from
                own_from = len(req.pages)
        if own_from < len(req.pages):
            self.allocator.free(req.pages[own_from:])
            self.owned_pages -= len(req.pages) - own_from
        if req.cache_node is not None:
            self.cache.unlock(req.cache_node)
        if req.row is not None:
            self.page_table.release_row(req.row)
        req.pages, req.num_computed, req.num_cache_pages = [], 0, 0
        req.cache_node, req.row, req.num_unverified = None, None, 0

    # ------------------------------------------------------------ invariant
    def check(self) -> None:
        free = self.allocator.num_free
        evictable = self.cache.evictable_pages if self.cache else 0
        locked = self.cache.locked_pages if self.cache else 0
        total = free + evictable + locked + self.owned_pages
        if total != self.allocator.capacity:
            raise AssertionError(
                f"KV accounting broken: free {free} + evictable {evictable} + locked {locked} "
                f"+ owned {self.owned_pages} = {total} != capacity {self.allocator.capacity}"
            )
