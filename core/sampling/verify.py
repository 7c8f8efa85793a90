"""Chain verification on the device: how many of a verify row's tokens are accepted."""

from __future__ import annotations

import torch


def accept_chain(tokens: torch.Tensor, spans: list[int], drafts: list[list[int]]) -> torch.Tensor:
    """``tokens``: the target's token at every logit row (int64 ``[sum(spans)]``), request
    ``r`` owning ``spans[r] = 1 + len(drafts[r])`` consecutive rows. Returns int64 ``[R]``:
    ``1 + a`` where ``a`` is the length of the longest prefix of ``drafts[r]`` that equals the
    target's tokens at the positions before each draft (greedy chain acceptance: a draft is
    accepted when the target, at that position, produced exactly it). No host sync."""
    device = tokens.device
    k = max((len(d) for d in drafts), default=0)
    if k == 0:
        return torch.ones(len(spans), dtype=torch.int64, device=device)
    idx, want, valid, start = [], [], [], 0
    for span, d in zip(spans, drafts):
        idx += [start + min(j, span - 1) for j in range(k)]
        want += list(d) + [0] * (k - len(d))
        valid += [1] * len(d) + [0] * (k - len(d))
        start += span
    packed = torch.tensor(idx + want + valid, dtype=torch.int64).to(device, non_blocking=True)
    idx_t, want_t, valid_t = packed.view(3, len(spans), k)
    agree = (tokens[idx_t] == want_t) & valid_t.bool()
    return 1 + agree.to(torch.int64).cumprod(dim=1).sum(dim=1)
