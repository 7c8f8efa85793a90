"""Admission order of waiting requests: a pluggable policy."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from anyware.request.request import Request


class SchedulePolicy(ABC):
    name: str

    @abstractmethod
    def order(self, waiting: list[Request], prefix_len: Callable[[Request], int]) -> list[Request]:
        """Return ``waiting`` in admission order. ``prefix_len(req)`` is the cached-prefix
        length the prefix cache would give ``req`` now (0 without a cache)."""


class FCFSPolicy(SchedulePolicy):
    """First come, first served (retracted requests keep their place at the front)."""

    name = "fcfs"

    def order(self, waiting, prefix_len):
        return list(waiting)


class LPMPolicy(SchedulePolicy):
    """Longest prefix match first, so requests sharing a cached prefix run together; falls
    back to FCFS when the queue is longer than ``max_queue`` (matching costs time)."""

    name = "lpm"

    def __init__(self, max_queue: int = 256) -> None:
        self.max_queue = max_queue

    def order(self, waiting, prefix_len):
        if len(waiting) > self.max_queue:
            return list(waiting)
        keyed = [(-prefix_len(r), i, r) for i, r in enumerate(waiting)]
        return [r for _, _, r in sorted(keyed, key=lambda k: (k[0], k[1]))]


def make_policy(name: str) -> SchedulePolicy:
    policies = {"fcfs": FCFSPolicy, "lpm": LPMPolicy}
    if name not in policies:
        raise ValueError(f"unknown schedule policy {name!r}; choose from {sorted(policies)}")
    return policies[name]()
