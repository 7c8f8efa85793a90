"""Side-effect-free TPU checks: no jax import, no device initialisation."""

from __future__ import annotations

import glob
import importlib.util

from anyware.plugin import ProbeResult

CPU_REASON = ("JAX CPU backend (no TPU): runs by name only (--platform tpu); "
              "for a TPU VM pip install anyware[tpu] 'jax[tpu]'")


def tpu_visible() -> bool:
    """A TPU VM exposes its chips as /dev/accel* (v4 and earlier) or /dev/vfio/* (v5e and
    later), and JAX reaches them through the ``libtpu`` package."""
    if importlib.util.find_spec("libtpu") is None:
        return False
    return bool(glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*"))


def probe() -> ProbeResult:
    for module, what in (("jax", "jax"), ("torchax", "torchax")):
        if importlib.util.find_spec(module) is None:
            return ProbeResult.no(f"{what} is not installed — pip install anyware[tpu]")
    if tpu_visible():
        return ProbeResult.yes("TPU through libtpu")
    return ProbeResult.on_request(CPU_REASON)
