"""Selecting one platform among the discovered ones and loading it (rule 5: selection is
explicit and explained)."""

from __future__ import annotations

import os

from anyware.plugin import PlatformSelectionError
from anyware.runtime.discovery import PlatformInfo, discover, extension_hooks
from anyware.runtime.driver import PlatformDriver

ENV_VAR = "ANYWARE_PLATFORM"


def _status(info: PlatformInfo) -> str:
    if not info.available:
        return "unavailable: " + info.probe.reason
    return "available by name only" if info.probe.explicit_only else "available"


def choose(infos: list[PlatformInfo], name: str | None = None) -> PlatformInfo:
    """Pick a platform: explicit ``name``, else ``$ANYWARE_PLATFORM``, else the
    highest-priority available one that is not explicit-only (a probe with
    ``explicit_only`` is chosen only by name). Raises :class:`PlatformSelectionError` with candidates."""
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


def load_platform(name: str | None = None, infos: list[PlatformInfo] | None = None) -> PlatformDriver:
    """Select a platform (see :func:`choose`), instantiate it, connect the extension plugins
    and return the driver the core uses."""
    info = choose(discover() if infos is None else infos, name)
    return PlatformDriver(info.cls(), extension_hooks())
