"""Import aiter's Triton modules on a machine without ROCm, for CPU tests under
``TRITON_INTERPRET=1``.

amd-aiter 0.1.7's package ``__init__`` runs ``hipconfig --version`` and raises
``RuntimeError: ROCm version file not found`` without ROCm, even for its pure-Triton modules.
The harness registers ``aiter`` and ``aiter.ops`` as bare namespace packages (their
``__init__`` files are skipped, the kernel files load from the installed wheel), activates a
fake HIP driver whose target is MI300 (``GPUTarget("hip", "gfx942", 64)``) and answers the
device queries aiter's launch helpers make (CU count). One further stub: aiter's ``mha`` module
imports the backward kernels of ``flash_attn_triton_amd``, whose autotune configs name a
non-argument (``ACTUAL_HEAD_DIM``) that Triton 3.9 rejects at import; the plugin uses only the
forward pass, so that package is stubbed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import types

import torch

STUBBED = "aiter.ops.triton._triton_kernels.flash_attn_triton_amd"


class FakeHipDriver:
    def __init__(self) -> None:
        from triton.backends.compiler import GPUTarget

        self.target = GPUTarget("hip", "gfx942", 64)

    def get_current_target(self):
        return self.target

    def get_active_torch_device(self):
        return torch.device("cpu")

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0

    def map_python_to_cpp_type(self, ty):
        raise NotImplementedError


def aiter_missing() -> str | None:
    if importlib.util.find_spec("aiter") is None:
        return "amd-aiter is not installed (it is in the dev extra)"
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed"
    return None


@contextlib.contextmanager
def aiter_on_cpu():
    """Yield with aiter's Triton modules importable and a fake MI300 driver active."""
    from triton.runtime import driver

    root = os.path.dirname(importlib.util.find_spec("aiter").origin)
    saved_modules = {k: v for k, v in sys.modules.items() if k == "aiter" or k.startswith("aiter.")}
    saved_active = driver._active
    saved_cuda = (torch.cuda.current_device, torch.cuda.get_device_properties)
    try:
        for name, sub in (("aiter", ""), ("aiter.ops", "ops")):
            pkg = types.ModuleType(name)
            pkg.__path__ = [os.path.join(root, sub)]
            sys.modules[name] = pkg
        stub = types.ModuleType(STUBBED)
        stub.flash_attn_2 = None
        sys.modules[STUBBED] = stub
        driver.set_active(FakeHipDriver())
        torch.cuda.current_device = lambda: 0
        torch.cuda.get_device_properties = lambda device=0: types.SimpleNamespace(
            multi_processor_count=304, gcnArchName="gfx942:sramecc+:xnack-",
            name="AMD Instinct MI300X (fake)")
        yield
    finally:
        torch.cuda.current_device, torch.cuda.get_device_properties = saved_cuda
        driver._active = saved_active
        for k in [k for k in sys.modules if k == "aiter" or k.startswith("aiter.")]:
            del sys.modules[k]
        sys.modules.update(saved_modules)
