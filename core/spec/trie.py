"""Merging draft continuations into a token trie: a :class:`DraftTree` of at most ``k`` nodes.

Continuations that share a prefix share its nodes; each node weighs the summed weight of the
continuations through it. Nodes are taken best first — heaviest, then shallowest (a node
near the root is reached by more verifies), then the continuation given first — from the
frontier of nodes whose parent is already taken, so the tree keeps the most frequent
branches, every parent precedes its children, and a node's first child is its heaviest:
``DraftTree.chain`` follows the heaviest child at each level.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from anyware.request import DraftTree


class _Node:
    __slots__ = ("children", "order", "weight")

    def __init__(self, order: int) -> None:
        self.children: dict[int, _Node] = {}
        self.weight = 0.0
        self.order = order  # insertion order: ties go to the earlier continuation


def build_trie(continuations: Sequence[Sequence[int]], max_nodes: int,
               weights: Sequence[float] | None = None) -> DraftTree:
    """The trie of ``continuations`` (each a token list following the root), capped at
    ``max_nodes`` nodes; ``weights[i]`` (default 1) is continuation ``i``'s weight."""
    if weights is not None and len(weights) != len(continuations):
        raise ValueError("build_trie needs one weight per continuation")
    root, count = _Node(-1), 0
    for i, cont in enumerate(continuations):
        w = 1.0 if weights is None else float(weights[i])
        node = root
        for tok in cont:
            child = node.children.get(tok)
            if child is None:
                child = node.children[tok] = _Node(count)
                count += 1
            child.weight += w
            node = child
    tokens: list[int] = []
    parents: list[int] = []
    frontier: list[tuple[float, int, int, int, int, _Node]] = []

    def push(parent: int, depth: int, node: _Node) -> None:
        for tok, child in node.children.items():
            heapq.heappush(frontier, (-child.weight, depth, child.order, parent, tok, child))

    push(-1, 1, root)
    while frontier and len(tokens) < max_nodes:
        _, depth, _, parent, tok, node = heapq.heappop(frontier)
        tokens.append(tok)
        parents.append(parent)
        push(len(tokens) - 1, depth + 1, node)
    return DraftTree(tuple(tokens), tuple(parents))
