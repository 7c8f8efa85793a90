"""Merging what extension plugins contribute (through the pluggy hooks of
:mod:`anyware.plugin.hookspecs`) with what the platform provides itself (rule 7)."""

from __future__ import annotations

from typing import Any

from anyware.plugin import AttentionBackend, ConformanceMetadata, Platform


class Contributions:
    """The extension hook relay for one platform instance (``hooks`` may be ``None``: no
    extensions connected)."""

    def __init__(self, platform: Platform, hooks: Any = None) -> None:
        self.platform = platform
        self.hooks = hooks

    def call(self, hook_name: str, **kwargs: Any) -> list:
        """Call a lifecycle hook of every extension with ``platform=`` and ``kwargs``."""
        if self.hooks is None:
            return []
        return getattr(self.hooks, hook_name)(platform=self.platform, **kwargs)

    def classes(self, hook_name: str) -> list:
        """Classes contributed through ``hook_name``, highest ``priority`` first."""
        found: list = []
        for items in self.call(hook_name):
            found.extend(items or ())
        return sorted(found, key=lambda c: -getattr(c, "priority", 0))

    def attention_backends(self) -> list[type[AttentionBackend]]:
        """The platform's own backends plus the contributed ones, highest priority first."""
        found = list(self.platform._attention_backends())
        for contributed in self.call("anyware_attention_backends"):
            found.extend(contributed or ())
        return sorted(found, key=lambda b: -b.priority)

    def moe_backends(self) -> list:
        """The platform's own MoE backends plus the contributed ones, highest priority first."""
        found = list(self.platform._moe_backends())
        for contributed in self.call("anyware_moe_backends"):
            found.extend(contributed or ())
        return sorted(found, key=lambda b: -b.priority)

    def conformance_metadata(self) -> ConformanceMetadata:
        """The platform's waivers and known failures with the extensions' appended."""
        meta = self.platform._conformance_metadata()
        for extra in self.call("anyware_conformance_metadata"):
            if extra:
                meta = ConformanceMetadata(
                    waivers=meta.waivers + extra.waivers,
                    known_failures=meta.known_failures + extra.known_failures,
                )
        return meta
