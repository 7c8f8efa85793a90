"""Side-effect-free Ascend NPU checks: ``torch_npu`` is never imported here.

Facts this probe encodes (torch-npu 2.14.0 on x86-64, checked 2026-12):

* torch-npu pins torch exactly (torch-npu 2.13.0 needs torch 2.13.0, 2.14.0 needs 2.14.0).
* It loads only with the CANN toolkit (``libhccl.so`` and friends); without CANN it fails at
  import.
* torch auto-loads installed device backends at ``import torch``; with torch_npu installed
  and no CANN, a plain ``import torch`` fails unless ``TORCH_DEVICE_BACKEND_AUTOLOAD=0``. When
  discovery runs at all, torch has imported, so either the backend loaded (``torch_npu`` is in
  ``sys.modules``) or auto-loading is off.
"""

from __future__ import annotations

import glob
import importlib.metadata
import importlib.util
import os
import sys

import torch

AUTOLOAD_ENV = "TORCH_DEVICE_BACKEND_AUTOLOAD"
CANN_ENV_VARS = ("ASCEND_TOOLKIT_HOME", "ASCEND_HOME_PATH", "ASCEND_OPP_PATH")
CANN_DEFAULT = "/usr/local/Ascend/ascend-toolkit/latest"


def torch_release(version: str) -> str:
    """``"2.14.0+cpu"`` -> ``"2.14.0"``; ``"2.14.0.post3"`` -> ``"2.14.0"``."""
    base = version.split("+")[0]
    parts = base.split(".")
    return ".".join(parts[:3])


def cann_home() -> str | None:
    """The CANN toolkit's root, from its ``set_env.sh`` variables or the default path."""
    for var in CANN_ENV_VARS:
        home = os.environ.get(var)
        if home and os.path.isdir(home):
            return home
    return CANN_DEFAULT if os.path.isdir(CANN_DEFAULT) else None


def davinci_devices() -> int:
    """Ascend devices visible as ``/dev/davinci<N>`` (no driver call)."""
    return len([p for p in glob.glob("/dev/davinci*") if p.removeprefix("/dev/davinci").isdigit()])


def npu_problem() -> str | None:
    """Why the NPU platform cannot run here (a sentence that says what to do), or ``None``."""
    pairing = (f"pip install torch-npu=={torch_release(torch.__version__)} "
               "(torch-npu X.Y.Z pairs with torch X.Y.Z)")
    if importlib.util.find_spec("torch_npu") is None:
        return ("torch_npu is not installed — install the CANN toolkit, then " + pairing
                + "; see docs/platforms/npu.md")
    try:
        npu_version = importlib.metadata.version("torch-npu")
    except importlib.metadata.PackageNotFoundError:
        npu_version = None
    if npu_version and torch_release(npu_version) != torch_release(torch.__version__):
        return (f"torch-npu {npu_version} does not match torch {torch.__version__} — "
                + pairing)
    loaded = "torch_npu" in sys.modules
    if not loaded and cann_home() is None:
        return ("torch_npu is installed but the CANN toolkit is not found (libhccl.so missing; "
                "source /usr/local/Ascend/ascend-toolkit/set_env.sh). Until CANN is installed, "
                f"`import torch` itself needs {AUTOLOAD_ENV}=0")
    if loaded:
        npu = getattr(torch, "npu", None)
        try:
            count = int(npu.device_count()) if npu is not None else 0
        except Exception as exc:
            return f"torch_npu is loaded but torch.npu.device_count() failed: {exc}"
    else:
        count = davinci_devices()
    if count < 1:
        return ("no Ascend NPU visible (check npu-smi info, the driver, and "
                "ASCEND_RT_VISIBLE_DEVICES)")
    return None


def visible_device_count() -> int:
    """torch.npu's count when torch_npu is loaded, else the ``/dev/davinci*`` count."""
    if "torch_npu" in sys.modules and getattr(torch, "npu", None) is not None:
        try:
            return int(torch.npu.device_count())
        except Exception:
            return 0
    return davinci_devices()
