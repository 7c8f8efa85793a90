"""Side-effect-free ROCm checks: no HIP context, no aiter or triton import.

aiter is "importable" when it is installed and ROCm's ``hipconfig`` can be found: aiter's
package ``__init__`` runs ``hipconfig --version`` and raises ``RuntimeError: ROCm version file
not found`` without it (amd-aiter 0.1.7), even for its pure-Triton modules.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

import torch
from anyware_torchdev import hidden_by_env, module_importable

#: test-only switch: accept a CUDA build of torch and run the portable path (docs/platforms/rocm.md)
ALLOW_CUDA_ENV = "ANYWARE_ROCM_ALLOW_CUDA_BUILD"
#: platform option with the same meaning (``--platform-option rocm_allow_cuda_build=1``)
ALLOW_CUDA_OPTION = "rocm_allow_cuda_build"

#: variables that hide every GPU when set to "" or "-1"
VISIBLE_DEVICES_ENV = ("HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES")

TORCH_ROCM_INSTALL = ("install a ROCm build of torch from the PyTorch index first "
                      "(pip install torch --index-url https://download.pytorch.org/whl/rocm6.4), "
                      "then pip install anyware[rocm]")


def allow_cuda_build() -> bool:
    """True when the test-only switch is set (``ANYWARE_ROCM_ALLOW_CUDA_BUILD=1``)."""
    return os.environ.get(ALLOW_CUDA_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def is_hip_build() -> bool:
    return bool(getattr(torch.version, "hip", None))


def visible_device_count() -> int:
    """GPUs this process would see, without initialising HIP (0 on failure).

    HIP builds of torch answer ``torch.cuda.device_count()`` through amdsmi / the runtime's
    device count, which creates no context. (Not the toolkit's ``visible_device_count``: that
    one also requires ``torch.cuda._is_compiled()``, which the probe tests' fake HIP build on a
    CPU wheel does not have.)
    """
    if hidden_by_env(*VISIBLE_DEVICES_ENV):
        return 0
    try:
        return int(torch.cuda.device_count())
    except Exception:
        return 0


def hipconfig_path() -> str | None:
    """Where ROCm's ``hipconfig`` is (aiter needs it at import), or ``None``."""
    found = shutil.which("hipconfig")
    if found:
        return found
    for var in ("ROCM_HOME", "ROCM_PATH"):
        home = os.environ.get(var)
        if home and os.path.exists(os.path.join(home, "bin", "hipconfig")):
            return os.path.join(home, "bin", "hipconfig")
    default = "/opt/rocm/bin/hipconfig"
    return default if os.path.exists(default) else None


@dataclass(frozen=True)
class RocmEnvironment:
    """What the probe found. ``problem`` is why the platform cannot run (``None``: it can);
    ``aiter_problem`` why aiter's kernels are not used (``None``: they are)."""

    problem: str | None
    aiter_problem: str | None
    test_only_cuda: bool
    devices: int


def rocm_environment(allow_cuda: bool | None = None) -> RocmEnvironment:
    allow = allow_cuda_build() if allow_cuda is None else allow_cuda
    test_only = False
    if not is_hip_build():
        if allow and torch.version.cuda is not None:
            test_only = True
        else:
            return RocmEnvironment(
                f"torch {torch.__version__} has no HIP build (torch.version.hip is None) — "
                + TORCH_ROCM_INSTALL, None, False, 0)
    if not module_importable("triton"):
        return RocmEnvironment("triton is not installed — the ROCm build of torch brings "
                               "pytorch-triton-rocm; reinstall torch from the PyTorch ROCm index",
                               None, test_only, 0)
    devices = visible_device_count()
    if devices < 1:
        return RocmEnvironment("no AMD GPU visible (check rocm-smi, /dev/kfd permissions and "
                               "HIP_VISIBLE_DEVICES)", None, test_only, 0)
    if test_only:
        aiter_problem = (f"TEST ONLY: CUDA build accepted ({ALLOW_CUDA_ENV}=1); aiter is "
                         "never used on it")
    elif not module_importable("aiter"):
        aiter_problem = "aiter is not installed (pip install anyware[rocm])"
    elif hipconfig_path() is None:
        aiter_problem = ("aiter is installed but ROCm's hipconfig is not found, so aiter cannot "
                         "import (set ROCM_HOME or put /opt/rocm/bin on PATH)")
    else:
        aiter_problem = None
    return RocmEnvironment(None, aiter_problem, test_only, devices)
