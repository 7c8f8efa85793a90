"""Speculative decoding: drafters (n-gram prompt lookup, a draft model, an EAGLE-3 head), the
automatic off-switch, and their wiring between the engine's step and the scheduler's draft
source (docs/speculative.md)."""

from anyware.spec.drafter import Drafter, DraftItem
from anyware.spec.ngram import NgramDrafter
from anyware.spec.ngram_tree import NgramTreeDrafter
from anyware.spec.speculator import ALGORITHMS, SpecConfig, Speculator, draft_room
from anyware.spec.switch import SpecSwitch
from anyware.spec.trie import build_trie

__all__ = ["ALGORITHMS", "DraftItem", "Drafter", "NgramDrafter", "NgramTreeDrafter", "SpecConfig", "SpecSwitch",
           "Speculator", "build_trie", "draft_room"]
