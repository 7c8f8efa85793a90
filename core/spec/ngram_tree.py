"""`NgramTreeDrafter`: prompt lookup that drafts a token tree (``--speculative-ngram-tree``).

Like :class:`~anyware.spec.ngram.NgramDrafter`, it looks up the request's last ``n`` tokens
(``n = max_n`` down to ``min_n``) in its own tokens (prompt + output), but gathers up to
``max_matches`` earlier occurrences — the longest n-grams first, most recent first within an
``n`` — instead of one. Each occurrence proposes what followed it (continuing with its own
drafts when it runs into the end, as the chain drafter does); different occurrences can
propose different continuations. The continuations are merged into a trie
(:func:`~anyware.spec.trie.build_trie`), each weighing its match length ``n``, capped at the
``max_tokens`` nodes the engine allows. A single match (or agreeing ones) gives a chain.

Per request and per ``n`` the drafter keeps, for each n-gram, the end positions of its last
``max_matches`` occurrences, indexing only the tokens added since the previous call.
"""

from __future__ import annotations

import weakref

from anyware.request import DraftTree, Request
from anyware.spec.drafter import Drafter
from anyware.spec.trie import build_trie


class _Index:
    __slots__ = ("ends", "tokens")

    def __init__(self, num_sizes: int) -> None:
        self.tokens: list[int] = []
        self.ends: list[dict[tuple[int, ...], list[int]]] = [{} for _ in range(num_sizes)]


class NgramTreeDrafter(Drafter):
    name = "ngram"

    def __init__(self, min_n: int = 1, max_n: int = 4, max_matches: int = 8) -> None:
        if not 1 <= min_n <= max_n:
            raise ValueError(f"n-gram sizes need 1 <= min_n <= max_n, got {min_n}..{max_n}")
        if max_matches < 1:
            raise ValueError(f"max_matches must be >= 1, got {max_matches}")
        self.min_n, self.max_n, self.max_matches = min_n, max_n, max_matches
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
        # n-grams ending before the last token (the suffix is looked up, not indexed)
        for e in range(max(start, 1), end):
            for i, n in enumerate(range(self.min_n, self.max_n + 1)):
                if e >= n:
                    ends = idx.ends[i].setdefault(tuple(toks[e - n : e]), [])
                    ends.append(e)
                    if len(ends) > self.max_matches:
                        del ends[0]
        return idx

    def matches(self, request: Request) -> list[tuple[int, int]]:
        """``(n, end)`` of the occurrences used: longest n first, most recent first."""
        idx = self._index(request)
        toks, length = idx.tokens, len(idx.tokens)
        out: list[tuple[int, int]] = []
        seen: set[int] = set()
        for i in range(self.max_n - self.min_n, -1, -1):
            n = self.min_n + i
            if length < n + 1:
                continue
            for e in reversed(idx.ends[i].get(tuple(toks[length - n :]), ())):
                if e not in seen:
                    seen.add(e)
                    out.append((n, e))
                    if len(out) == self.max_matches:
                        return out
        return out

    def propose(self, request: Request, max_tokens: int) -> DraftTree | list[int]:
        if max_tokens <= 0:
            return []
        found = self.matches(request)
        if not found:
            return []
        toks = self._state[request].tokens
        length = len(toks)
        conts = []
        for _, e in found:
            cont: list[int] = []
            for j in range(max_tokens):
                p = e + j
                cont.append(toks[p] if p < length else cont[p - length])
            conts.append(cont)
        return build_trie(conts, max_tokens, [n for n, _ in found])

    def release(self, request: Request) -> None:
        self._state.pop(request, None)
