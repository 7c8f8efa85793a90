"""Side-effect-free Intel XPU checks: no device initialisation, no vendor import.

Stock torch >= 2.5 has ``torch.xpu``; on a build without XPU support ``is_available()`` is
False (``torch._C._has_xpu`` is False and the device count is 0).
"""

from __future__ import annotations

import importlib.util

import torch
from anyware_torchdev import visible_device_count as _visible_device_count

#: ``ZE_AFFINITY_MASK=""`` hides every Intel GPU from Level Zero
VISIBLE_DEVICES_ENV = ("ZE_AFFINITY_MASK",)

TORCH_XPU_INSTALL = ("install the XPU build of torch from the PyTorch index first "
                     "(pip install torch --index-url https://download.pytorch.org/whl/xpu), "
                     "then pip install anyware[xpu]")


def torch_has_xpu_build() -> bool:
    return hasattr(torch, "xpu") and bool(getattr(torch._C, "_has_xpu", False))


def visible_device_count() -> int:
    """Intel GPUs this process would see, without initialising the device (0 on failure or on
    a torch build without XPU)."""
    xpu = getattr(torch, "xpu", None)
    return 0 if xpu is None else _visible_device_count(xpu, VISIBLE_DEVICES_ENV)


def xpu_problem() -> str | None:
    """Why the XPU platform cannot run here (a sentence that says what to do), or ``None``."""
    if not hasattr(torch, "xpu"):
        return f"torch {torch.__version__} has no torch.xpu module (torch >= 2.5 needed) — " + (
            TORCH_XPU_INSTALL)
    if not torch_has_xpu_build():
        return (f"torch {torch.__version__} has no XPU build (torch.xpu.is_available() is "
                "False) — " + TORCH_XPU_INSTALL)
    if visible_device_count() < 1 or not torch.xpu.is_available():
        return ("torch has an XPU build but sees no Intel GPU (check the GPU driver and "
                "Level Zero runtime, `sycl-ls`, and ZE_AFFINITY_MASK)")
    return None


def xpu_kernels_problem() -> str | None:
    """Why the vllm-xpu-kernels fast path is off, or ``None`` (installed; import checked later)."""
    if importlib.util.find_spec("vllm_xpu_kernels") is None:
        return "vllm-xpu-kernels is not installed (pip install anyware[xpu])"
    return None


def intel_triton_problem() -> str | None:
    """Why the portable Triton kernels are off on XPU, or ``None``.

    Triton runs on XPU only with Intel's backend (the ``pytorch-triton-xpu`` distribution that
    the XPU build of torch depends on); it registers a backend named ``intel``.
    """
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed (the XPU build of torch brings pytorch-triton-xpu)"
    try:
        from importlib.metadata import entry_points

        names = {ep.name for ep in entry_points(group="triton.backends")}
    except Exception:
        names = set()
    spec = importlib.util.find_spec("triton.backends.intel")
    if spec is None and "intel" not in names:
        return "the installed triton has no Intel backend (install pytorch-triton-xpu)"
    return None
