"""Side-effect-free probe helpers for torch device platforms: no device context, no import of
the vendor runtime being probed."""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType


def module_importable(name: str) -> bool:
    """Whether ``import name`` would find the module, without importing it (its parent packages
    are imported, as ``importlib.util.find_spec`` does). Never raises."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a missing parent package, or a broken __spec__
        return False


def hidden_by_env(*variables: str) -> str | None:
    """The first of ``variables`` set to hide every device (``""`` or ``"-1"``, as in
    ``CUDA_VISIBLE_DEVICES=""``), or ``None``."""
    for var in variables:
        if os.environ.get(var, None) in ("", "-1"):
            return var
    return None


def runtime_compiled(module: ModuleType) -> bool:
    """Whether this torch build has the device module's runtime compiled in (a CPU wheel has
    ``torch.cuda`` and ``torch.xpu`` modules whose classes are placeholders). Modules without
    the private ``_is_compiled`` check (out-of-tree ones such as ``torch.npu``) count as
    compiled: importing their package is what registers them."""
    check = getattr(module, "_is_compiled", None)
    if check is None:
        return True
    try:
        return bool(check())
    except Exception:
        return False


def visible_device_count(module: ModuleType, hide_vars: tuple[str, ...] = ()) -> int:
    """Devices of ``module`` (``torch.cuda``, ``torch.xpu``, ``torch.npu``) this process would
    see, without creating a device context; 0 when any of ``hide_vars`` hides all devices, the
    runtime is not compiled in, or the count fails.

    ``torch.cuda.device_count()`` asks NVML (AMD SMI on ROCm) before the runtime and
    ``torch.xpu.device_count()`` asks Level Zero Sysman before the runtime; neither initialises
    the device (``module.is_initialized()`` stays false). Check the same holds for an
    out-of-tree module before relying on it in a probe.
    """
    if hidden_by_env(*hide_vars) or not runtime_compiled(module):
        return 0
    try:
        return max(0, int(module.device_count()))
    except Exception:
        return 0


def unavailable(why: str, todo: str) -> str:
    """The sentence a probe returns when a platform cannot run: ``"<why> — <what to do>"``."""
    why, todo = why.strip().rstrip("."), todo.strip().rstrip(".")
    return f"{why} — {todo}" if todo else why
