"""Side-effect-free CUDA checks: no CUDA context, no triton import."""

from __future__ import annotations

import torch
from anyware_torchdev import module_importable, unavailable
from anyware_torchdev import visible_device_count as _visible_device_count


def visible_device_count() -> int:
    """CUDA devices this process would see, without creating a CUDA context (NVML first, then
    the runtime's count; 0 when ``CUDA_VISIBLE_DEVICES`` hides them all or on failure)."""
    return _visible_device_count(torch.cuda, ("CUDA_VISIBLE_DEVICES",))


def cuda_problem() -> str | None:
    """Why the CUDA platform cannot run here (a sentence that says what to do), or ``None``."""
    if torch.version.cuda is None or not torch.backends.cuda.is_built():
        return unavailable(f"torch {torch.__version__} has no CUDA build",
                           "pip install anyware[cuda] with a CUDA wheel of torch")
    if getattr(torch.version, "hip", None):
        return unavailable("torch is a ROCm build", "use --platform rocm")
    if not module_importable("triton"):
        return unavailable("triton is not installed", "pip install anyware[cuda]")
    if visible_device_count() < 1:
        return unavailable("no CUDA device visible",
                           "check the driver, nvidia-smi and CUDA_VISIBLE_DEVICES")
    return None
