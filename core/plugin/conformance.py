"""What a plugin tells the conformance suite about itself: waivers and known failures."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Waiver:
    """Loosen the tolerance of tests matching ``test`` (an fnmatch pattern on the test id)
    for ``op`` and ``dtype`` (e.g. "bfloat16"; "*" for any). Listed in every report."""

    test: str
    atol: float
    rtol: float
    reason: str
    dtype: str = "*"


@dataclass(frozen=True)
class KnownFailure:
    """A strict expected failure: tests matching ``test`` must fail; a pass is an error."""

    test: str
    issue: str
    reason: str


@dataclass(frozen=True)
class ConformanceMetadata:
    """What ``Platform._conformance_metadata`` (and the ``anyware_conformance_metadata`` hook)
    returns: tolerance waivers and strict expected failures, both listed in every report."""

    waivers: tuple[Waiver, ...] = ()
    known_failures: tuple[KnownFailure, ...] = ()
