"""`DeviceEvent`: a point in the device's work queue the host can wait for.

The engine overlaps scheduling with execution on platforms whose device work runs
asynchronously to the host (``Capabilities.async_execution``): it launches step N+1, then waits
for an event recorded after step N's sampled tokens were copied to the host, never for the
whole device. Platforms whose work completes before the launching call returns (the CPU) hand
out events that are already complete.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class DeviceEvent(Protocol):
    """Returned by ``Platform.record_event``; marks the device work queued before it."""

    def synchronize(self) -> None:
        """Block the calling host thread until the work queued before the event finished."""

    def query(self) -> bool:
        """True once that work has finished (never blocks)."""


class CompletedEvent:
    """The event of a platform that executes synchronously: always complete."""

    def synchronize(self) -> None:
        return None

    def query(self) -> bool:
        return True
