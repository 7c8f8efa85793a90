"""Speculative decoding: drafters (n-gram prompt lookup, a draft model, an EAGLE-3 head), the
automatic off-switch, and their wiring between the engine's step and the scheduler's draft
source (docs/speculative.md)."""

from anyware.spec.drafter import Drafter, DraftItem
from anyware.spec.ngram import NgramDrafter
from anyware.spec.speculator import ALGORITHMS, SpecConfig, Speculator, draft_room
from anyware.spec.switch import SpecSwitch

__all__ = ["ALGORITHMS", "DraftItem", "Drafter", "NgramDrafter", "SpecConfig", "SpecSwitch",
           "Speculator", "draft_room"]
