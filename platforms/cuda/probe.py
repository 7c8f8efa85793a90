"""Side-effect-free CUDA checks: no CUDA context, no triton import."""

from __future__ import annotations

import importlib.util
import os

import torch


def visible_device_count() -> int:
    """Devices this process would see, without creating a CUDA context.

    NVML first (no ``cuInit``), then the runtime's device count (``cudaGetDeviceCount``,
    which creates no context and leaves ``torch.cuda.is_initialized()`` false). 0 on failure.
    """
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return 0
    nvml = getattr(torch.cuda, "_device_count_nvml", None)
    if nvml is not None:
        try:
            n = int(nvml())
            if n >= 0:
                return n
        except Exception:
            pass
    raw = getattr(torch._C, "_cuda_getDeviceCount", None)
    if raw is None:
        return 0
    try:
        return int(raw())
    except Exception:
        return 0


def cuda_problem() -> str | None:
    """Why the CUDA platform cannot run here (a sentence that says what to do), or ``None``."""
    if torch.version.cuda is None or not torch.backends.cuda.is_built():
        return (
            f"torch {torch.__version__} has no CUDA build — pip install anyware[cuda] with a "
            "CUDA wheel of torch"
        )
    if getattr(torch.version, "hip", None):
        return "torch is a ROCm build — use --platform rocm"
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed — pip install anyware[cuda]"
    if visible_device_count() < 1:
        return "no CUDA device visible (check the driver, nvidia-smi and CUDA_VISIBLE_DEVICES)"
    return None
