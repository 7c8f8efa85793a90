"""The load-time compatibility check of a plugin's targeted contract version (rule 4)."""

from __future__ import annotations

from anyware.plugin import PLUGIN_API_VERSION, PluginVersionError


def _parse(version: str) -> tuple[int, int, int]:
    parts = str(version).strip().split(".")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise PluginVersionError(f"plugin API version {version!r} is not of the form MAJOR.MINOR[.PATCH]")
    nums = [int(p) for p in parts] + [0] * (3 - len(parts))
    return nums[0], nums[1], nums[2]


def check_api_version(plugin: str, targeted: str) -> None:
    """Raise :class:`PluginVersionError` unless a plugin targeting ``targeted`` can load: same
    MAJOR as ``PLUGIN_API_VERSION`` and a MINOR that is not newer."""
    ours = _parse(PLUGIN_API_VERSION)
    theirs = _parse(targeted)
    if theirs[0] != ours[0] or theirs[1] > ours[1]:
        raise PluginVersionError(
            f"plugin {plugin!r} targets plugin API {targeted}, but this anyware provides "
            f"{PLUGIN_API_VERSION} (compatible: {ours[0]}.0 to {ours[0]}.{ours[1]}). "
            f"Install a version of the plugin built for anyware's plugin API {ours[0]}.x, "
            f"or an anyware release that provides {targeted}."
        )
