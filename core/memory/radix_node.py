"""Radix-tree node and the results `RadixCache` returns (see radix_cache.py for the contract)."""

from __future__ import annotations

from dataclasses import dataclass


class RadixNode:
    """One edge of the tree and the node below it (an opaque handle for callers).

    ``key``: the edge's tokens (a tuple; length a multiple of page_size, empty only for roots).
    ``pages``: the edge's page ids (``len(key) // page_size`` of them).
    ``lock_ref``: the number of locks held on this node or any descendant.
    ``last_access`` / ``access_count`` / ``created_at``: statistics for the eviction policy
    (see ``anyware.memory.eviction.NodeStats``).
    """

    __slots__ = ("access_count", "children", "created_at", "detached", "key", "last_access",
                 "lock_ref", "node_id", "pages", "parent", "salt")

    def __init__(self, key: tuple[int, ...], pages: list[int], parent: RadixNode | None,
                 salt: str | None, node_id: int, now: int) -> None:
        self.key = key
        self.pages = pages
        self.parent = parent
        self.salt = salt
        self.node_id = node_id
        self.children: dict[tuple[int, ...], RadixNode] = {}
        self.lock_ref = 0
        self.last_access = now
        self.access_count = 1
        self.created_at = now
        self.detached = False

    def __repr__(self) -> str:
        return (f"RadixNode(id={self.node_id}, tokens={len(self.key)}, pages={self.pages}, "
                f"lock_ref={self.lock_ref}, salt={self.salt!r})")


@dataclass(frozen=True)
class MatchResult:
    """Result of ``RadixCache.match_prefix``.

    ``pages``: the cached page ids of the matched prefix, in sequence order
    (``num_tokens // page_size`` of them); owned by the cache.
    ``num_tokens``: length of the matched prefix (a multiple of page_size; 0 for a miss).
    ``node``: handle of the node that ends exactly at the matched prefix (a root for a miss);
    pass it to ``lock``/``unlock``.
    """

    pages: list[int]
    num_tokens: int
    node: RadixNode


@dataclass(frozen=True)
class InsertResult:
    """Result of ``RadixCache.insert``.

    ``num_existing_tokens``: how many leading tokens were already cached before the call
    (a multiple of page_size).
    ``duplicate_pages``: caller pages of that already-cached part that differ from the cache's
    own pages at the same positions, in sequence order. They remain the caller's: free them.
    ``node``: handle of the node that ends exactly at the inserted page-aligned prefix (a root
    when fewer than page_size tokens were given).
    """

    num_existing_tokens: int
    duplicate_pages: list[int]
    node: RadixNode


def _copy_stats(src: RadixNode, dst: RadixNode) -> None:
    dst.last_access, dst.access_count = src.last_access, src.access_count
    dst.created_at = src.created_at
