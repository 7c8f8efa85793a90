"""`FutureTokens`: sampled tokens the host has not seen yet, kept on the device.

With overlap scheduling the scheduler builds step N+1 before step N's tokens reach the host.
A request's next input token is then a *placeholder*, ``-(row + 1)`` for the request's
page-table row, and the device resolves it from this buffer, where each step's sampler
publishes its tokens by row. Everything runs in stream order, so a resolve always sees the
tokens of every step launched before it.

Only the newest token of a request can be a placeholder: the host replaces step N's
placeholders with their values before it schedules step N+2.
"""

from __future__ import annotations

import torch
from anyware.request.request import placeholder

__all__ = ["FutureTokens", "placeholder"]


class FutureTokens:
    def __init__(self, num_rows: int, device: torch.device) -> None:
        self.device = device
        self.tokens = torch.zeros(num_rows, dtype=torch.int64, device=device)

    def publish(self, rows: list[int], tokens: torch.Tensor) -> None:
        """Record ``tokens`` (device, int64 ``[len(rows)]``) as the newest token of ``rows``."""
        if rows:
            idx = torch.tensor(rows, dtype=torch.int64).to(self.device, non_blocking=True)
            self.tokens.index_copy_(0, idx, tokens)

    def resolve(self, ids: torch.Tensor) -> torch.Tensor:
        """``ids`` (device int64) with every placeholder replaced by its token."""
        slots = (-ids - 1).clamp_(min=0)
        return torch.where(ids < 0, self.tokens[slots], ids)
