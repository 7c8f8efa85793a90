"""Platform options (``--platform-option KEY=VALUE``) read into a kernel backend's tunables,
each coerced to the type of the attribute's default."""

from __future__ import annotations

from collections.abc import Iterable

OPTION_PREFIX = "triton_"  # the Triton kernel owners' platform options: triton_decode_block_n, ...


def apply_platform_options(target, platform, prefix: str, keys: Iterable[str]) -> None:
    """Set ``target.<key>`` from ``platform.config.extra[prefix + key]`` for each key present
    (:func:`coerce_option` against the attribute's current value); absent keys keep theirs."""
    config = getattr(platform, "config", None)
    extra = config.extra if config is not None else {}
    for key in keys:
        name = f"{prefix}{key}"
        if name in extra:
            setattr(target, key, coerce_option(name, extra[name], getattr(target, key)))


def coerce_option(name: str, value, default):
    """A platform option's value as the type of its default: booleans from ``true/false/1/0/
    yes/no/on/off`` in any case (so ``False`` is false, not a truthy string), numbers from
    text; ``None`` defaults (the kernel's own choice) take an int or ``None``/``none``."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"platform option {name} takes true or false, not {value!r}")
    if value is None or str(value).strip().lower() in ("none", "null", ""):
        if default is None:
            return None
        raise ValueError(f"platform option {name} needs a number, not {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"platform option {name} takes a whole number, not {value!r}") from None
