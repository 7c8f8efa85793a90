"""The request -> page table, resident on the device.

Each running request owns a row; the batch's ``page_table`` is a gather of rows, so a step
copies only the page ids that changed (batched into one scatter), never whole tables.
"""

from __future__ import annotations

from array import array

import torch


class PageTable:
    def __init__(self, max_requests: int, max_pages_per_request: int, device: torch.device):
        self.max_pages = max_pages_per_request
        self.table = torch.zeros((max_requests, max_pages_per_request), dtype=torch.int32, device=device)
        self._free_rows = list(range(max_requests - 1, -1, -1))
        self._pending: list[tuple[int, int, int]] = []
        # rank 0 of a tensor-parallel group: every update in order, until the next step plan
        # sends them (another worker sharing this table, a draft model, may flush some first)
        self._mirror: list[tuple[int, int, int]] | None = None
        self.device = device

    @property
    def num_free_rows(self) -> int:
        return len(self._free_rows)

    def acquire_row(self) -> int:
        if not self._free_rows:
            raise RuntimeError("page table has no free row (max running requests reached)")
        return self._free_rows.pop()

    def release_row(self, row: int) -> None:
        self._free_rows.append(row)

    def set_pages(self, row: int, start: int, pages: list[int]) -> None:
        """Record that ``pages`` hold page indices ``start..`` of the request in ``row``."""
        if start + len(pages) > self.max_pages:
            raise ValueError("request exceeds the page table width (context length)")
        updates = [(row, start + i, p) for i, p in enumerate(pages)]
        self._pending.extend(updates)
        if self._mirror is not None:
            self._mirror.extend(updates)

    def mirror(self) -> None:
        """Start recording every update for :meth:`take_mirrored` (rank 0 of a group whose
        table other workers share: the updates the other ranks need are all of them, whoever
        flushed them here)."""
        if self._mirror is None:
            self._mirror = list(self._pending)

    def take_mirrored(self) -> list[tuple[int, int, int]]:
        """Every update recorded since the last call, in order (after :meth:`mirror`)."""
        out, self._mirror = self._mirror, []
        return out

    def flush(self) -> None:
        """Apply pending updates with one scatter."""
        if not self._pending:
            return
        # rows, columns, then page ids: one host->device copy
        rows, cols, pages = zip(*self._pending)
        upd = _int64([*rows, *cols, *pages]).to(self.device, non_blocking=True).view(3, -1)
        self.table[upd[0], upd[1]] = upd[2].to(torch.int32)
        self._pending.clear()

    def take_pending(self) -> list[tuple[int, int, int]]:
        """The ``(row, column, page)`` updates not yet applied, handed over (and cleared): a
        tensor-parallel rank 0 sends them to the other ranks, and every rank :meth:`apply`s
        them."""
        pending, self._pending = self._pending, []
        return pending

    def apply(self, updates: list[tuple[int, int, int]]) -> None:
        """Record ``updates`` (from :meth:`take_pending`, here or on rank 0) and flush."""
        self._pending.extend(updates)
        self.flush()

    def rows(self, rows: list[int], num_cols: int) -> torch.Tensor:
        """``[len(rows), num_cols]`` page table for a batch (after ``flush``)."""
        self.flush()
        idx = _int64(rows).to(self.device, non_blocking=True)
        return self.table[idx, :num_cols]


def _int64(values: list[int]) -> torch.Tensor:
    """A host int64 tensor of ``values`` (through an ``array``: several times faster than
    ``torch.tensor`` of a list; the tensor keeps the array alive)."""
    if not values:
        return torch.empty(0, dtype=torch.int64)
    return torch.frombuffer(array("q", values), dtype=torch.int64)
