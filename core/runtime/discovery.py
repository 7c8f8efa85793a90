"""Finding platform plugins through entry points and probing them (rule 3, rule 5).

Every plugin, in-tree or third-party, is found the same way: the entry-point group
``anyware.platforms`` (one platform each) and ``anyware.extensions`` (contributions to
existing platforms). A plugin that fails to import, targets another plugin-API version, or
raises in its probe is reported as unavailable with the reason; it never takes the others
down.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

import pluggy
from anyware.plugin import (
    EXTENSION_GROUP,
    PLATFORM_GROUP,
    Platform,
    PluginError,
    ProbeResult,
    hookspecs,
)
from anyware.runtime.compat import check_api_version

if TYPE_CHECKING:
    from anyware.runtime.capabilities import EffectiveCapabilities


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

    def capabilities(self) -> EffectiveCapabilities | None:
        """The effective capabilities of a fresh instance (no extensions, no device);
        ``None`` when unavailable. Raises what the platform's declaration raises."""
        if not self.available:
            return None
        from anyware.runtime.driver import PlatformDriver

        return PlatformDriver(self.cls()).capabilities()

    def capability_summary(self) -> str:
        """One line for ``anyware platforms``; a broken declaration is shown, not raised."""
        if not self.available:
            return "-"
        try:
            return self.capabilities().summary()
        except Exception as exc:
            return f"(capabilities raised {type(exc).__name__}: {exc})"


def probe(cls: type[Platform]) -> ProbeResult:
    """Run ``cls._probe()``; never raises: an exception or a malformed answer is reported as
    "unavailable" with the reason."""
    try:
        result = cls._probe()
    except Exception as exc:  # a probe must never take the others down
        return ProbeResult.no(f"probe raised {type(exc).__name__}: {exc}")
    if not isinstance(result, ProbeResult):
        return ProbeResult.no(f"probe returned {type(result).__name__}, not ProbeResult")
    return result


def plugin_manager() -> pluggy.PluginManager:
    """A pluggy manager that knows the contract's hookspecs."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def _check_hooks(pm: pluggy.PluginManager, name: str) -> None:
    """A misspelled ``anyware_*`` hook would be silently ignored: make it an error."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {name!r} implements an unknown hook: {exc}") from exc


def _dist_of(ep: metadata.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "?", "?"
    return dist.metadata["Name"] or "?", dist.version or "?"


def _platform_from(module: object, ep_name: str) -> type[Platform]:
    pm = plugin_manager()
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
    """Load and probe every platform plugin, highest priority first (then by name). Never
    raises for a single bad plugin."""
    infos: list[PlatformInfo] = []
    seen: dict[str, int] = {}
    for ep in metadata.entry_points(group=PLATFORM_GROUP):
        package, version = _dist_of(ep)
        info = PlatformInfo(ep.name, package, version, ep.value, None, ProbeResult.no("not loaded"))
        try:
            info.cls = _platform_from(ep.load(), ep.name)
            info.priority = info.cls.priority
            info.probe = probe(info.cls)
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


def extension_hooks() -> Any:
    """The pluggy hook relay of every installed extension plugin (group
    ``anyware.extensions``). Raises :class:`PluginError` naming an extension that fails to
    load or implements an unknown hook."""
    pm = plugin_manager()
    for ep in metadata.entry_points(group=EXTENSION_GROUP):
        try:
            pm.register(ep.load(), name=f"ext:{ep.name}")
            _check_hooks(pm, ep.name)
        except Exception as exc:
            raise PluginError(f"extension plugin {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
    return pm.hook
