"""Rank processes for tensor/expert parallelism: where each rank sits (:class:`Placement`,
from ``torchrun``'s environment or spawned locally), the process group and its control
channel (:class:`RankGroup`), and the loop of a rank other than 0 (:func:`follow`)."""

from anyware.distributed.group import RankFailedError, RankGroup
from anyware.distributed.placement import Placement, PlacementError, resolve_placement

__all__ = ["Placement", "PlacementError", "RankFailedError", "RankGroup", "resolve_placement"]
