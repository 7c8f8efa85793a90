"""Finding platform plugins through entry points, probing them, and selecting one (rule 5).

Every plugin, in-tree or third-party, is found the same way: the entry-point group
``anyware.platforms`` (one platform each) and ``anyware.extensions`` (contributions to
existing platforms). A plugin that fails to import, targets another plugin-API version, or
raises in its probe is reported as unavailable with the reason; it never takes the others
down.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import metadata

import pluggy
from anyware.plugin import hookspecs
from anyware.plugin.errors import PlatformSelectionError, PluginError
from anyware.plugin.platform import Platform, ProbeResult
from anyware.plugin.version import check_api_version

PLATFORM_GROUP = "anyware.platforms"
EXTENSION_GROUP = "anyware.extensions"
ENV_VAR = "ANYWARE_PLATFORM"


@dataclass
class PlatformInfo:
    """One discovered platform plugin and the outcome of its probe."""

    name: str
    package: str
    version: str
    entry_point: str
    cls: type[Platform] | None
    probe: ProbeResult
    priority: int = 0

    @property
    def available(self) -> bool:
        return self.cls is not None and self.probe.available

    def capability_summary(self) -> str:
        if not self.available:
            return "-"
        try:
            return self.cls().capabilities().summary()
        except Exception as exc:
            return f"(capabilities raised {type(exc).__name__}: {exc})"


def _dist_of(ep: metadata.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "?", "?"
    return dist.metadata["Name"] or "?", dist.version or "?"


def _plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def _check_hooks(pm: pluggy.PluginManager, name: str) -> None:
    """A misspelled ``anyware_*`` hook would be silently ignored: make it an error."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {name!r} implements an unknown hook: {exc}") from exc


def _platform_from(module: object, ep_name: str) -> type[Platform]:
    pm = _plugin_manager()
    pm.register(module, name=ep_name)
    _check_hooks(pm, ep_name)
    results = [r for r in pm.hook.anyware_platform() if r is not None]
    if len(results) != 1:
        raise PluginError(f"entry point {ep_name!r} must provide exactly one platform, got {len(results)}")
    cls = results[0]
    if not (isinstance(cls, type) and issubclass(cls, Platform)):
        raise PluginError(f"entry point {ep_name!r} returned {cls!r}, not a Platform subclass")
    if cls.name != ep_name:
        raise PluginError(f"entry point {ep_name!r} provides platform named {cls.name!r}; names must match")
    check_api_version(ep_name, getattr(cls, "plugin_api_version", "0"))
    return cls


def discover() -> list[PlatformInfo]:
    """Load and probe every platform plugin. Never raises for a single bad plugin."""
    infos: list[PlatformInfo] = []
    seen: dict[str, int] = {}
    for ep in metadata.entry_points(group=PLATFORM_GROUP):
        package, version = _dist_of(ep)
        info = PlatformInfo(ep.name, package, version, ep.value, None, ProbeResult.no("not loaded"))
        try:
            info.cls = _platform_from(ep.load(), ep.name)
            info.priority = info.cls.priority
            info.probe = info.cls.probe()
        except Exception as exc:
            info.cls = None
            info.probe = ProbeResult.no(f"plugin failed to load: {type(exc).__name__}: {exc}")
        if ep.name in seen:  # two distributions claim one name: both become unusable
            other = infos[seen[ep.name]]
            reason = f"platform name {ep.name!r} is provided by both {other.package} and {package}"
            for i in (other, info):
                i.cls, i.probe = None, ProbeResult.no(reason)
        else:
            seen[ep.name] = len(infos)
        infos.append(info)
    return sorted(infos, key=lambda i: (-i.priority, i.name))


def _status(info: PlatformInfo) -> str:
    if not info.available:
        return "unavailable: " + info.probe.reason
    return "available by name only" if info.probe.explicit_only else "available"


def choose(infos: list[PlatformInfo], name: str | None = None) -> PlatformInfo:
    """Pick a platform: explicit ``name``, else ``$ANYWARE_PLATFORM``, else the
    highest-priority available one. Raises :class:`PlatformSelectionError` with candidates."""
    name = name or os.environ.get(ENV_VAR) or None
    table = "; ".join(
        f"{i.name} ({_status(i)})" for i in infos
    ) or "none installed"
    if name is not None:
        matches = [i for i in infos if i.name == name]
        if not matches:
            raise PlatformSelectionError(
                f"unknown platform {name!r}. Discovered: {table}. Install its plugin "
                f"(e.g. pip install anyware[{name}]) or pick one of these."
            )
        info = matches[0]
        if not info.available:
            raise PlatformSelectionError(f"platform {name!r} is not available: {info.probe.reason}")
        return info
    available = [i for i in infos if i.available and not i.probe.explicit_only]
    if not available:
        raise PlatformSelectionError(f"no platform is available. Discovered: {table}")
    best = available[0].priority
    top = [i for i in available if i.priority == best]
    if len(top) > 1:
        raise PlatformSelectionError(
            f"platforms {', '.join(i.name for i in top)} are available with the same priority "
            f"{best}; choose one with --platform or {ENV_VAR}"
        )
    return top[0]


def load_platform(name: str | None = None, infos: list[PlatformInfo] | None = None) -> Platform:
    """Select a platform, instantiate it, and connect extension plugins to its hooks."""
    info = choose(discover() if infos is None else infos, name)
    platform = info.cls()
    pm = _plugin_manager()
    for ep in metadata.entry_points(group=EXTENSION_GROUP):
        try:
            pm.register(ep.load(), name=f"ext:{ep.name}")
            _check_hooks(pm, ep.name)
        except Exception as exc:
            raise PluginError(f"extension plugin {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
    platform.hooks = pm.hook
    return platform
