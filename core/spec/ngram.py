"""`NgramDrafter`: prompt lookup. No model; host-side, incremental.

For a request whose tokens are ``s[0..L)``, the drafter looks for the most recent earlier
occurrence of the last ``n`` tokens, trying ``n = max_n`` down to ``min_n``, and proposes the
tokens that followed that occurrence. When the occurrence ends so close to the end that the
continuation runs into the request's last tokens, the proposal continues with its own
drafts (a repeating pattern keeps repeating), so a short cycle still fills ``k`` drafts.

Per request the drafter keeps, for each ``n``, a dict from n-gram to the end position of its
most recent occurrence; each call indexes only the tokens added since the previous call (the
known tokens of a request never change), so a proposal costs ``O(new tokens * (max_n - min_n
+ 1) + k)``.
"""

from __future__ import annotations

import weakref

from anyware.request import Request
from anyware.spec.drafter import Drafter


class _Index:
    __slots__ = ("ends", "tokens")

    def __init__(self, num_sizes: int) -> None:
        self.tokens: list[int] = []
        self.ends: list[dict[tuple[int, ...], int]] = [{} for _ in range(num_sizes)]


class NgramDrafter(Drafter):
    name = "ngram"

    def __init__(self, min_n: int = 1, max_n: int = 4) -> None:
        if not 1 <= min_n <= max_n:
            raise ValueError(f"n-gram sizes need 1 <= min_n <= max_n, got {min_n}..{max_n}")
        self.min_n, self.max_n = min_n, max_n
        self._state: weakref.WeakKeyDictionary[Request, _Index] = weakref.WeakKeyDictionary()

    def _index(self, req: Request) -> _Index:
        idx = self._state.get(req)
        if idx is None or len(idx.tokens) > req.seq_len:
            idx = self._state[req] = _Index(self.max_n - self.min_n + 1)
        toks = idx.tokens
        start, end = len(toks), req.seq_len
        if start == end:
            return idx
        toks.extend(req.tokens(start, end))
        # index every n-gram that ends before the last token (the suffix itself is looked up,
        # not indexed, so a lookup only ever finds an earlier occurrence)
        for e in range(max(start, 1), end):
            for i, n in enumerate(range(self.min_n, self.max_n + 1)):
                if e >= n:
                    idx.ends[i][tuple(toks[e - n : e])] = e
        return idx

    def propose(self, request: Request, max_tokens: int) -> list[int]:
        if max_tokens <= 0:
            return []
        idx = self._index(request)
        toks, length = idx.tokens, len(idx.tokens)
        for i in range(self.max_n - self.min_n, -1, -1):
            n = self.min_n + i
            if length < n + 1:
                continue
            e = idx.ends[i].get(tuple(toks[length - n :]))
            if e is None:
                continue
            out: list[int] = []
            for j in range(max_tokens):
                p = e + j
                out.append(toks[p] if p < length else out[p - length])
            return out
        return []

    def release(self, request: Request) -> None:
        self._state.pop(request, None)
