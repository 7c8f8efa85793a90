"""The page allocator: hands out KV page ids, lowest id first (deterministic, testable)."""

from __future__ import annotations

import heapq

from anyware.plugin.errors import AnywareError


class OutOfPagesError(AnywareError):
    """Fewer free pages than requested."""


class PageAllocator:
    """Page ids ``1 .. num_pages-1``; page 0 is the scratch page (never handed out).

    ``alloc(n)`` returns the ``n`` lowest free ids or raises :class:`OutOfPagesError` (nothing
    is taken then); ``free(pages)`` returns them. Freeing a page that is not allocated raises
    ``ValueError`` (a double free is always a bug).
    """

    SCRATCH_PAGE = 0

    def __init__(self, num_pages: int) -> None:
        if num_pages < 2:
            raise ValueError(f"need at least 2 pages (one is scratch), got {num_pages}")
        self.num_pages = num_pages
        self._free = list(range(1, num_pages))
        self._is_free = bytearray(num_pages)
        for p in self._free:
            self._is_free[p] = 1

    @property
    def capacity(self) -> int:
        """Usable pages (scratch excluded)."""
        return self.num_pages - 1

    @property
    def num_free(self) -> int:
        return len(self._free)

    @property
    def num_used(self) -> int:
        return self.capacity - len(self._free)

    def alloc(self, n: int) -> list[int]:
        if n < 0:
            raise ValueError("cannot allocate a negative number of pages")
        if n > len(self._free):
            raise OutOfPagesError(f"asked for {n} pages, {len(self._free)} free")
        pages = [heapq.heappop(self._free) for _ in range(n)]
        for p in pages:
            self._is_free[p] = 0
        return pages

    def free(self, pages: list[int]) -> None:
        for p in pages:
            if not 0 < p < self.num_pages or self._is_free[p]:
                raise ValueError(f"page {p} is not allocated (double free or foreign id)")
            self._is_free[p] = 1
            heapq.heappush(self._free, p)
