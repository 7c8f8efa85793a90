"""The KV pool: one K and one V tensor per layer, allocated through the platform in the
layout the attention backend declares."""

from __future__ import annotations

from anyware.plugin import KVCache, KVLayout
from anyware.runtime import PlatformDriver


def pages_for_budget(budget_bytes: int, layout: KVLayout, num_layers: int) -> int:
    """How many pages (of every layer) fit in ``budget_bytes``, rounded down to the layout's
    alignment."""
    per_page = layout.bytes_per_page() * num_layers
    pages = budget_bytes // per_page
    return int(pages - pages % layout.alignment)


class KVPool:
    """Owns the KV tensors; ``cache`` is what attention backends receive."""

    def __init__(self, platform: PlatformDriver, layout: KVLayout, num_layers: int, num_pages: int):
        if num_pages < 2:
            raise ValueError("the KV pool needs at least 2 pages")
        if num_pages % layout.alignment:
            num_pages += layout.alignment - num_pages % layout.alignment
        self.layout = layout
        self.num_layers = num_layers
        self.num_pages = num_pages
        self.cache: KVCache = layout.allocate(platform, num_layers, num_pages)

    @property
    def bytes(self) -> int:
        return self.layout.bytes_per_page() * self.num_layers * self.num_pages
