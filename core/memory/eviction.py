"""Eviction policies for the radix prefix cache.

A policy turns the access statistics of one cache node into a priority key; the cache
evicts the evictable leaf with the *smallest* key first. The cache breaks ties between equal
keys by node creation order (older first), so eviction order is deterministic.

Timestamps are logical: the cache keeps a counter that advances once per ``match_prefix`` or
``insert`` call, so policies never read a wall clock and tests can assert exact orders.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Protocol


class NodeStats(Protocol):
    """The read-only statistics a policy may use (a cache node provides them).

    ``last_access``: logical time of the latest ``match_prefix``/``insert`` that touched the node.
    ``access_count``: number of ``match_prefix``/``insert`` calls that touched the node
    (its creation counts as one).
    ``created_at``: logical time at which the node's tokens entered the cache (a node made by
    splitting an edge inherits the time of the edge it was split from).
    """

    @property
    def last_access(self) -> int: ...

    @property
    def access_count(self) -> int: ...

    @property
    def created_at(self) -> int: ...


class EvictionPolicy(ABC):
    """Chooses which unlocked leaf the radix cache evicts next.

    Contract: ``priority`` is a pure function of the node's statistics; it returns a value
    comparable with the values it returns for other nodes (a tuple of ints is typical).
    The leaf with the smallest priority is evicted first.
    """

    #: short name, used by ``make_policy`` and in logs/metrics
    name: str = ""

    @abstractmethod
    def priority(self, node: NodeStats) -> tuple[int, ...]:
        """Sort key of ``node``: smaller means evicted earlier."""


class LRUPolicy(EvictionPolicy):
    """Least recently used first (the default)."""

    name = "lru"

    def priority(self, node: NodeStats) -> tuple[int, ...]:
        return (node.last_access,)


class LFUPolicy(EvictionPolicy):
    """Least frequently used first; among equally used nodes, least recently used first."""

    name = "lfu"

    def priority(self, node: NodeStats) -> tuple[int, ...]:
        return (node.access_count, node.last_access)


class FIFOPolicy(EvictionPolicy):
    """Oldest cached tokens first, regardless of use."""

    name = "fifo"

    def priority(self, node: NodeStats) -> tuple[int, ...]:
        return (node.created_at,)


_POLICIES: dict[str, type[EvictionPolicy]] = {
    cls.name: cls for cls in (LRUPolicy, LFUPolicy, FIFOPolicy)
}


def policy_names() -> list[str]:
    """Names accepted by ``make_policy``, sorted."""
    return sorted(_POLICIES)


def make_policy(name: str) -> EvictionPolicy:
    """A fresh policy object by name (``"lru"``, ``"lfu"``, ``"fifo"``, case-insensitive).

    Raises ``ValueError`` naming the known policies for an unknown name.
    """
    try:
        return _POLICIES[name.lower()]()
    except KeyError:
        raise ValueError(
            f"unknown radix cache eviction policy {name!r}; known: {', '.join(policy_names())}"
        ) from None
