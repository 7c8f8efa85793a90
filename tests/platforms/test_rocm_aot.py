"""CI gate: the ROCm plugin's Triton kernels compile ahead of time for MI300 (gfx942)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KERNELS = ("_decode_split_kernel", "_decode_reduce_kernel", "_extend_kernel", "_rms_norm_kernel",
           "_rotary_kernel", "_silu_and_mul_kernel", "_store_kv_kernel")


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_portable_kernels_compile_for_gfx942(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path)  # a fresh cache: every kernel really compiles
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    proc = subprocess.run([sys.executable, "-m", "tests.platforms.rocm_aot"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    built = {line.split()[1].rstrip(":") for line in proc.stdout.splitlines()
             if line.startswith("gfx942 ")}
    assert set(KERNELS) <= built, f"not compiled for gfx942: {sorted(set(KERNELS) - built)}"
