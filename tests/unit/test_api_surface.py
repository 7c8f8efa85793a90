"""Snapshot of the public surface of ``anyware.plugin`` (rule 4: the contract is versioned).

Every name in ``anyware.plugin.__all__`` is rendered as text: classes with their bases, class
attributes, dataclass fields, methods (public ones and the ``_hooks`` a plugin overrides) and
signatures; functions with signatures; constants with their values; plus every pluggy hookspec.
The rendering is compared with the committed ``tests/unit/api_surface.txt``.

A deliberate change: bump ``PLUGIN_API_VERSION`` (MINOR for additions, MAJOR for removals or
changes of meaning) and regenerate with ``python -m tests.unit.test_api_surface --update`` (or
``ANYWARE_UPDATE_API_SNAPSHOT=1 python -m pytest tests/unit/test_api_surface.py``).
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import inspect
import os
import sys
from pathlib import Path
from typing import Any

SNAPSHOT = Path(__file__).with_name("api_surface.txt")
UPDATE_ENV = "ANYWARE_UPDATE_API_SNAPSHOT"
_FOREIGN_MODULES = {"builtins", "abc", "enum", "typing", "typing_extensions"}
_SKIP_ATTRS = {"__dict__", "__weakref__", "__module__", "__doc__", "__annotations__",
               "__abstractmethods__", "_abc_impl", "__dataclass_fields__", "__dataclass_params__",
               "__match_args__", "__orig_bases__", "__parameters__", "__protocol_attrs__",
               "__non_callable_proto_members__", "__subclasshook__", "__hash__", "__eq__",
               "__repr__", "__init__", "__setattr__", "__delattr__", "__getstate__",
               "__setstate__", "__replace__", "_is_protocol", "_is_runtime_protocol",
               "__static_attributes__", "__firstlineno__"}


def _value(v: Any) -> str:
    """A repr that is stable across processes (sets are sorted)."""
    if isinstance(v, (set, frozenset)):
        inner = ", ".join(sorted(_value(x) for x in v))
        return f"{type(v).__name__}({{{inner}}})"
    if isinstance(v, tuple):
        return "(" + ", ".join(_value(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_value(k)}: {_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, enum.Enum):
        return f"{type(v).__name__}.{v.name}"
    if isinstance(v, type):
        return v.__qualname__
    if callable(v) and hasattr(v, "__qualname__"):
        return v.__qualname__
    return repr(v)


def _annotation(a: Any) -> str:
    if a is inspect.Parameter.empty:
        return ""
    return a if isinstance(a, str) else inspect.formatannotation(a)


def _signature(fn: Any) -> str:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return "(?)"
    parts, kw_marked = [], False
    params = list(sig.parameters.values())
    for i, p in enumerate(params):
        if p.kind is p.KEYWORD_ONLY and not kw_marked:
            parts.append("*")
            kw_marked = True
        prefix = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "")
        kw_marked |= p.kind is p.VAR_POSITIONAL
        text = prefix + p.name
        ann = _annotation(p.annotation)
        if ann:
            text += f": {ann}"
        if p.default is not p.empty:
            text += f" = {_value(p.default)}" if ann else f"={_value(p.default)}"
        parts.append(text)
        nxt = params[i + 1] if i + 1 < len(params) else None
        if p.kind is p.POSITIONAL_ONLY and (nxt is None or nxt.kind is not p.POSITIONAL_ONLY):
            parts.append("/")
    ret = _annotation(sig.return_annotation)
    return f"({', '.join(parts)})" + (f" -> {ret}" if ret else "")


def _is_surface(name: str) -> bool:
    """Public names, plus single-underscore hooks that plugins override."""
    if name.startswith("__") or name.startswith("_abc"):
        return False
    return not (name.startswith("_") and name.endswith("_"))  # enum's _sunder_ machinery


def _describe_class(cls: type) -> list[str]:
    bases = ", ".join(b.__qualname__ for b in cls.__bases__ if b is not object)
    lines = [f"class {cls.__name__}({bases})" if bases else f"class {cls.__name__}"]
    if issubclass(cls, BaseException):
        return lines
    if issubclass(cls, enum.Enum):
        lines += [f"    member {m.name} = {m.value!r}" for m in cls]
    fields = {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
    if fields:
        params = cls.__dataclass_params__
        lines.append(f"    dataclass(frozen={params.frozen})")
        for f in fields.values():
            if f.default is not dataclasses.MISSING:
                default = f" = {_value(f.default)}"
            elif f.default_factory is not dataclasses.MISSING:
                default = f" = <factory: {_value(f.default_factory())}>"
            else:
                default = ""
            lines.append(f"    field {f.name}: {_annotation(f.type)}{default}")
    # only what the contract defines: inherited stdlib machinery (Enum, ABC, Protocol) is not
    # part of our surface
    ours = [k for k in reversed(cls.__mro__) if k.__module__ not in _FOREIGN_MODULES]
    annotations: dict[str, Any] = {}
    for klass in ours:
        annotations.update(vars(klass).get("__annotations__", {}))
    names = set(annotations) | {n for k in ours for n in vars(k)}
    abstract = getattr(cls, "__abstractmethods__", frozenset())
    if not fields and any("__init__" in vars(k) for k in ours):
        lines.append(f"    constructor {_signature(cls.__init__)}")
    for name in sorted(names):
        if name in fields or name in _SKIP_ATTRS or not _is_surface(name):
            continue
        if issubclass(cls, enum.Enum) and name in cls.__members__:
            continue
        try:
            raw = inspect.getattr_static(cls, name)
        except AttributeError:  # annotated only
            lines.append(f"    attr {name}: {_annotation(annotations.get(name))}")
            continue
        tag = " [abstract]" if name in abstract else ""
        if isinstance(raw, property):
            lines.append(f"    property {name}{_signature(raw.fget).split(')', 1)[1]}")
        elif isinstance(raw, classmethod):
            lines.append(f"    classmethod {name}{_signature(getattr(cls, name))}{tag}")
        elif isinstance(raw, staticmethod):
            lines.append(f"    staticmethod {name}{_signature(raw.__func__)}{tag}")
        elif inspect.isfunction(raw):
            lines.append(f"    method {name}{_signature(raw)}{tag}")
        else:
            ann = _annotation(annotations.get(name, inspect.Parameter.empty))
            lines.append(f"    attr {name}{': ' + ann if ann else ''} = {_value(raw)}")
    return lines


def render() -> str:
    """The current public surface as text."""
    import anyware.plugin as plugin
    from anyware.plugin import hookspecs

    out = [
        "# Public surface of anyware.plugin. Generated by tests/unit/test_api_surface.py;",
        "# regenerate with `python -m tests.unit.test_api_surface --update` after bumping",
        "# PLUGIN_API_VERSION. Do not edit by hand.",
        f"PLUGIN_API_VERSION = {plugin.PLUGIN_API_VERSION!r}",
        "",
    ]
    for name in sorted(plugin.__all__):
        obj = getattr(plugin, name)
        if name == "PLUGIN_API_VERSION":
            continue
        if inspect.isclass(obj):
            out += _describe_class(obj)
        elif inspect.isfunction(obj):
            out.append(f"def {name}{_signature(obj)}")
        elif type(obj).__name__ in ("HookspecMarker", "HookimplMarker"):
            out.append(f"{name} = {type(obj).__name__}({obj.project_name!r})")
        else:
            out.append(f"{name} = {_value(obj)}")
        out.append("")
    out.append(f"# pluggy hookspecs (project {hookspecs.PROJECT!r})")
    for name, fn in sorted(vars(hookspecs).items()):
        if inspect.isfunction(fn) and hasattr(fn, f"{hookspecs.PROJECT}_spec"):
            out.append(f"hookspec {name}{_signature(fn)}")
    return "\n".join(out).rstrip() + "\n"


def update() -> None:
    SNAPSHOT.write_text(render())


def test_public_surface_matches_snapshot():
    current = render()
    if os.environ.get(UPDATE_ENV):
        SNAPSHOT.write_text(current)
    committed = SNAPSHOT.read_text() if SNAPSHOT.exists() else ""
    if current != committed:
        diff = "".join(
            difflib.unified_diff(
                committed.splitlines(keepends=True),
                current.splitlines(keepends=True),
                "tests/unit/api_surface.txt (committed)",
                "anyware.plugin (current)",
            )
        )
        raise AssertionError(
            "The public surface of anyware.plugin changed (diff below). If this is deliberate, "
            "bump PLUGIN_API_VERSION in core/plugin/version.py (MINOR for additions, MAJOR for "
            "removals or changes of meaning) and regenerate the snapshot with\n"
            "    python -m tests.unit.test_api_surface --update\n"
            f"(or {UPDATE_ENV}=1 python -m pytest tests/unit/test_api_surface.py); commit both. "
            "If it is not deliberate, undo the change.\n\n" + diff
        )


def test_snapshot_records_the_current_version():
    from anyware.plugin import PLUGIN_API_VERSION

    head = SNAPSHOT.read_text().splitlines()[:5]
    assert f"PLUGIN_API_VERSION = {PLUGIN_API_VERSION!r}" in head, (
        "PLUGIN_API_VERSION changed without regenerating tests/unit/api_surface.txt: run "
        "python -m tests.unit.test_api_surface --update"
    )


def test_rendering_is_sensitive_to_a_signature_change():
    """The snapshot would catch a changed signature (guards against a test that cannot fail)."""

    class Before:
        def run(self, x: int) -> int:
            return x

    class After:
        def run(self, x: int, y: int = 0) -> int:
            return x + y

    before = _describe_class(Before)[1:]
    after = _describe_class(After)[1:]
    assert before != after


if __name__ == "__main__":
    if "--update" in sys.argv[1:]:
        update()
        print(f"wrote {SNAPSHOT}")
    else:
        sys.stdout.write(render())
