"""`DraftTree`: draft tokens that branch (tree drafts of speculative decoding).

A tree of ``n`` draft *nodes* hangs below a *root*, the request's last known token. Node
``i`` carries ``tokens[i]`` and has parent ``parents[i]``: ``-1`` for the root, else the index
of an earlier node (``parents[i] < i``, so every prefix ``0 .. m`` of the nodes is a tree
too). Siblings carry distinct tokens (a trie), so a token sequence names at most one path.
Children are in preference order: a node's first child (lowest index) is the drafter's best
guess, and :meth:`DraftTree.chain` follows first children — the chain a step that cannot
verify a tree (a sampling request, a batch with prefill chunks) verifies instead.

In a VERIFY forward the root is new token 0 and node ``i`` new token ``i + 1``, at position
``prefix + depth`` (the root at ``prefix``); ``mask()`` is the ``SpecInfo.tree_mask`` block of
the request: each token sees itself and its ancestors.
"""

from __future__ import annotations

from dataclasses import dataclass


class InvalidDraftTreeError(ValueError):
    """A drafter produced a malformed tree (the message says which node and why)."""


@dataclass(frozen=True)
class DraftTree:
    """``tokens[i]`` / ``parents[i]``: node ``i``'s token and parent (``-1``: the root)."""

    tokens: tuple[int, ...]
    parents: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.tokens) != len(self.parents):
            raise InvalidDraftTreeError(
                f"a draft tree needs one parent per token, got {len(self.tokens)} tokens and "
                f"{len(self.parents)} parents")
        seen: set[tuple[int, int]] = set()
        for i, (tok, par) in enumerate(zip(self.tokens, self.parents)):
            if not -1 <= par < i:
                raise InvalidDraftTreeError(
                    f"draft tree node {i} has parent {par}: a parent is -1 (the root) or an "
                    "earlier node")
            if (par, tok) in seen:
                raise InvalidDraftTreeError(
                    f"draft tree node {i} repeats token {tok} under parent {par}: siblings "
                    "must carry distinct tokens (merge them)")
            seen.add((par, tok))

    @classmethod
    def from_chain(cls, tokens: list[int]) -> DraftTree:
        return cls(tuple(tokens), tuple(range(-1, len(tokens) - 1)))

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def is_chain(self) -> bool:
        return all(p == i - 1 for i, p in enumerate(self.parents))

    def depths(self) -> list[int]:
        """Depth of each node (a child of the root has depth 1)."""
        out: list[int] = []
        for p in self.parents:
            out.append(1 if p < 0 else out[p] + 1)
        return out

    def truncated(self, max_nodes: int) -> DraftTree:
        """The first ``max_nodes`` nodes (still a tree: parents come first)."""
        if len(self) <= max_nodes:
            return self
        m = max(max_nodes, 0)
        return DraftTree(self.tokens[:m], self.parents[:m])

    def chain(self) -> list[int]:
        """The tokens of the path of first children from the root."""
        out, cur = [], -1
        for i, p in enumerate(self.parents):
            if p == cur:
                out.append(self.tokens[i])
                cur = i
        return out

    def path(self, tokens: list[int]) -> list[int]:
        """The nodes of the root path whose tokens are ``tokens`` (raises ``ValueError`` when
        the tree has no such path)."""
        nodes, cur = [], -1
        for tok in tokens:
            nxt = next((i for i, (t, p) in enumerate(zip(self.tokens, self.parents))
                        if p == cur and t == tok), None)
            if nxt is None:
                raise ValueError(f"draft tree has no path {tokens}")
            nodes.append(nxt)
            cur = nxt
        return nodes

    def mask(self) -> list[list[bool]]:
        """``[n + 1, n + 1]``: whether new token ``a`` (0 the root, ``i + 1`` node ``i``) may
        attend to new token ``b`` — itself and its ancestors."""
        n = len(self)
        rows = [[False] * (n + 1) for _ in range(n + 1)]
        rows[0][0] = True
        for i, p in enumerate(self.parents):
            rows[i + 1] = list(rows[p + 1])
            rows[i + 1][i + 1] = True
        return rows
