"""Each vendor probe against faked environments: the exact reason and what to install."""

from __future__ import annotations

import importlib.machinery
import json
import subprocess
import sys
import types

import pytest
import torch
from anyware.runtime import probe
from anyware_npu import probe as npu_probe
from anyware_npu.platform import NpuPlatform
from anyware_rocm import probe as rocm_probe
from anyware_rocm.platform import RocmPlatform
from anyware_xpu.platform import XpuPlatform


# ------------------------------------------------------------------ ROCm
@pytest.fixture
def fake_hip(monkeypatch):
    """A HIP build of torch with two GPUs and no ROCm install (no hipconfig)."""
    monkeypatch.setattr(torch.version, "hip", "6.4.43482", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(rocm_probe, "hipconfig_path", lambda: None)
    monkeypatch.delenv(rocm_probe.ALLOW_CUDA_ENV, raising=False)


def test_rocm_probe_cpu_build_says_what_to_install(monkeypatch):
    monkeypatch.setattr(torch.version, "hip", None, raising=False)
    monkeypatch.setattr(torch.version, "cuda", None, raising=False)
    result = probe(RocmPlatform)
    assert not result.available
    assert "has no HIP build (torch.version.hip is None)" in result.reason
    assert "pip install anyware[rocm]" in result.reason and "whl/rocm" in result.reason


def test_rocm_probe_hip_build_without_rocm_install_runs_portable(fake_hip):
    result = probe(RocmPlatform)
    assert result.available, result.reason
    assert "2 AMD GPU(s), HIP 6.4.43482" in result.reason
    assert "portable Triton path" in result.reason
    assert ("hipconfig is not found" in result.reason
            or "aiter is not installed (pip install anyware[rocm])" in result.reason)


def test_rocm_probe_aiter_importable_with_hipconfig(fake_hip, monkeypatch):
    monkeypatch.setattr(rocm_probe, "module_importable", lambda name: True)
    monkeypatch.setattr(rocm_probe, "hipconfig_path", lambda: "/opt/rocm/bin/hipconfig")
    result = probe(RocmPlatform)
    assert result.available and "aiter + portable Triton" in result.reason


def test_rocm_probe_hip_build_without_gpu(fake_hip, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    result = probe(RocmPlatform)
    assert not result.available and "no AMD GPU visible" in result.reason
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("HIP_VISIBLE_DEVICES", "")
    assert "no AMD GPU visible" in probe(RocmPlatform).reason


def test_rocm_probe_test_only_cuda_switch(monkeypatch):
    monkeypatch.setattr(torch.version, "hip", None, raising=False)
    monkeypatch.setattr(torch.version, "cuda", "13.0", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert not probe(RocmPlatform).available  # off by default
    monkeypatch.setenv(rocm_probe.ALLOW_CUDA_ENV, "1")
    result = probe(RocmPlatform)
    assert result.available
    assert result.reason.startswith("TEST ONLY: CUDA build of torch accepted")
    assert "not AMD hardware" in result.reason
    env = rocm_probe.rocm_environment()
    assert env.test_only_cuda and env.aiter_problem.startswith("TEST ONLY")


# ------------------------------------------------------------------ XPU
def test_xpu_probe_without_xpu_build(monkeypatch):
    monkeypatch.setattr(torch._C, "_has_xpu", False, raising=False)
    result = probe(XpuPlatform)
    assert not result.available
    assert "has no XPU build (torch.xpu.is_available() is False)" in result.reason
    assert "pip install anyware[xpu]" in result.reason and "whl/xpu" in result.reason


def test_xpu_probe_build_without_device(monkeypatch):
    monkeypatch.setattr(torch._C, "_has_xpu", True, raising=False)
    monkeypatch.setattr(torch.xpu, "device_count", lambda: 0)
    result = probe(XpuPlatform)
    assert not result.available and "sees no Intel GPU" in result.reason


def test_xpu_probe_available_names_fast_paths(monkeypatch):
    monkeypatch.setattr(torch._C, "_has_xpu", True, raising=False)
    monkeypatch.setattr(torch.xpu, "device_count", lambda: 4)
    monkeypatch.setattr(torch.xpu, "is_available", lambda: True)
    result = probe(XpuPlatform)
    assert result.available and result.reason.startswith("4 Intel GPU(s)")
    # this machine has neither vllm-xpu-kernels nor Intel's Triton backend
    assert "vllm-xpu-kernels is not installed" in result.reason
    assert "no Intel backend" in result.reason


# ------------------------------------------------------------------ NPU
def _present(name):
    return importlib.machinery.ModuleSpec(name, None) if name == "torch_npu" else None


def test_npu_probe_absent():
    result = probe(NpuPlatform)
    assert not result.available
    assert result.reason.startswith("torch_npu is not installed")
    assert f"pip install torch-npu=={npu_probe.torch_release(torch.__version__)}" in result.reason


def test_npu_probe_version_mismatch(monkeypatch):
    monkeypatch.setattr(npu_probe.importlib.util, "find_spec", _present)
    monkeypatch.setattr(npu_probe.importlib.metadata, "version", lambda d: "2.1.0.post8")
    result = probe(NpuPlatform)
    assert not result.available
    assert "torch-npu 2.1.0.post8 does not match torch" in result.reason


def test_npu_probe_installed_without_cann_names_autoload(monkeypatch):
    """torch_npu installed without CANN: discovery must not crash, and the reason says that
    a plain `import torch` needs TORCH_DEVICE_BACKEND_AUTOLOAD=0."""
    monkeypatch.setattr(npu_probe.importlib.util, "find_spec", _present)
    monkeypatch.setattr(npu_probe.importlib.metadata, "version", lambda d: torch.__version__)
    monkeypatch.delitem(sys.modules, "torch_npu", raising=False)
    for var in npu_probe.CANN_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(npu_probe, "CANN_DEFAULT", "/nonexistent/ascend-toolkit")
    result = probe(NpuPlatform)
    assert not result.available
    assert "CANN toolkit is not found (libhccl.so missing" in result.reason
    assert "TORCH_DEVICE_BACKEND_AUTOLOAD=0" in result.reason


def test_npu_probe_cann_without_device(monkeypatch, tmp_path):
    monkeypatch.setattr(npu_probe.importlib.util, "find_spec", _present)
    monkeypatch.setattr(npu_probe.importlib.metadata, "version", lambda d: torch.__version__)
    monkeypatch.delitem(sys.modules, "torch_npu", raising=False)
    monkeypatch.setenv("ASCEND_TOOLKIT_HOME", str(tmp_path))
    monkeypatch.setattr(npu_probe.glob, "glob", lambda pattern: [])
    result = probe(NpuPlatform)
    assert not result.available and "no Ascend NPU visible" in result.reason


def test_npu_probe_loaded_backend(monkeypatch):
    """torch auto-loaded torch_npu (CANN present): torch.npu counts the devices."""
    monkeypatch.setattr(npu_probe.importlib.util, "find_spec", _present)
    monkeypatch.setattr(npu_probe.importlib.metadata, "version", lambda d: torch.__version__)
    monkeypatch.setitem(sys.modules, "torch_npu", types.ModuleType("torch_npu"))
    monkeypatch.setattr(torch, "npu", types.SimpleNamespace(device_count=lambda: 8), raising=False)
    result = probe(NpuPlatform)
    assert result.available and result.reason == "8 Ascend NPU(s)"


def test_npu_probe_never_imports_torch_npu(monkeypatch):
    """A present torch_npu that would crash on import (no CANN) is never imported."""
    monkeypatch.setattr(npu_probe.importlib.util, "find_spec", _present)
    monkeypatch.setattr(npu_probe.importlib.metadata, "version", lambda d: torch.__version__)
    monkeypatch.delitem(sys.modules, "torch_npu", raising=False)
    boom = types.ModuleType("torch_npu")

    def getattr_(name):
        raise AssertionError("torch_npu touched by the probe")

    boom.__getattr__ = getattr_
    probe(NpuPlatform)
    assert "torch_npu" not in sys.modules


# ------------------------------------------------------------------ discovery, end to end
def test_anyware_platforms_lists_vendors_unavailable_here():
    if torch.cuda.is_available():
        pytest.skip("a GPU host: the probes' reasons differ")
    out = subprocess.run([sys.executable, "-m", "anyware.cli.main", "platforms", "--json"],
                         capture_output=True, text=True, check=True, timeout=120)
    rows = {p["name"]: p for p in json.loads(out.stdout)["platforms"]}
    assert not rows["rocm"]["available"] and "no HIP build" in rows["rocm"]["reason"]
    assert not rows["xpu"]["available"] and "no XPU build" in rows["xpu"]["reason"]
    assert not rows["npu"]["available"] and "torch_npu is not installed" in rows["npu"]["reason"]
    assert {rows[n]["entry_point"] for n in ("rocm", "xpu", "npu")} == {
        "anyware_rocm.plugin", "anyware_xpu.plugin", "anyware_npu.plugin"}
