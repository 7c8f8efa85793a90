"""Triton norm / rotary / activation / KV-store kernels vs the torch reference ops."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed (pip install anyware[cuda])")

from _helpers import TOL, rel_err
from anyware.kernels import reference as ref
from anyware.kernels import triton as tk
from anyware.kernels.triton.ops import TritonOps

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def _ulp_tol(dtype) -> float:
    # one rounding of the output (interpreter casts may truncate rather than round)
    return {torch.float32: 1e-5, torch.bfloat16: 1.6e-2, torch.float16: 2e-3}[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hidden", [64, 200])
def test_rms_norm(device, dtype, hidden):
    x = torch.randn(7, hidden, dtype=dtype, device=device) * 3
    w = torch.randn(hidden, dtype=dtype, device=device)
    out = tk.rms_norm(x, w, 1e-6)
    assert out.dtype == dtype and out.shape == x.shape
    assert rel_err(out, ref.rms_norm(x, w, 1e-6)) < _ulp_tol(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_add_rms_norm(device, dtype):
    x = torch.randn(5, 96, dtype=dtype, device=device)
    r = torch.randn(5, 96, dtype=dtype, device=device)
    w = torch.randn(96, dtype=dtype, device=device)
    out, res = tk.fused_add_rms_norm(x, r, w, 1e-5)
    ref_out, ref_res = ref.fused_add_rms_norm(x, r, w, 1e-5)
    assert rel_err(res, ref_res) < _ulp_tol(dtype)
    assert rel_err(out, ref_out) < 2 * _ulp_tol(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_silu_and_mul(device, dtype):
    x = torch.randn(6, 2 * 80, dtype=dtype, device=device) * 2
    out = tk.silu_and_mul(x)
    assert out.shape == (6, 80)
    assert rel_err(out, ref.silu_and_mul(x)) < _ulp_tol(dtype)


@pytest.mark.parametrize("is_neox", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rot_dim,scaling", [
    (64, None),
    (32, None),  # partial rotary: dims past rot_dim pass through
    (64, {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
          "high_freq_factor": 4.0, "original_max_position_embeddings": 64}),
])
def test_rotary(device, is_neox, dtype, rot_dim, scaling):
    t, hq, hk, d, max_pos = 9, 4, 2, 64, 300
    cos_sin = ref.rope_cos_sin(rot_dim, max_pos, 10000.0, scaling).to(device)
    q = torch.randn(t, hq, d, dtype=dtype, device=device)
    k = torch.randn(t, hk, d, dtype=dtype, device=device)
    pos = torch.randint(0, max_pos, (t,), device=device)
    q_out, k_out = tk.apply_rotary(q, k, pos, cos_sin, is_neox)
    q_ref, k_ref = ref.apply_rotary(q, k, pos, cos_sin, is_neox)
    assert rel_err(q_out, q_ref) < _ulp_tol(dtype)
    assert rel_err(k_out, k_ref) < _ulp_tol(dtype)
    if rot_dim < d:
        assert torch.equal(q_out[..., rot_dim:], q[..., rot_dim:])


def test_rotary_strided_input(device):
    # q and k as views of a fused qkv projection (token stride > heads * dim)
    t, hq, hk, d = 5, 4, 2, 32
    qkv = torch.randn(t, (hq + 2 * hk) * d, device=device)
    q = qkv[:, : hq * d].view(t, hq, d)
    k = qkv[:, hq * d : (hq + hk) * d].view(t, hk, d)
    cos_sin = ref.rope_cos_sin(d, 64, 10000.0).to(device)
    pos = torch.randint(0, 64, (t,), device=device)
    got = tk.apply_rotary(q, k, pos, cos_sin)
    want = ref.apply_rotary(q, k, pos, cos_sin)
    assert rel_err(got[0], want[0]) < 1e-5 and rel_err(got[1], want[1]) < 1e-5


@pytest.mark.parametrize("dtype,cache_dtype", [
    (torch.float32, torch.float32), (torch.bfloat16, torch.bfloat16),
    (torch.float32, torch.float16),
])
def test_store_kv(device, dtype, cache_dtype):
    t, h, d, dv, slots_total = 6, 2, 32, 16, 40
    k_cache = torch.randn(slots_total, h, d, device=device).to(cache_dtype)
    v_cache = torch.randn(slots_total, h, dv, device=device).to(cache_dtype)
    kv = torch.randn(t, h, d + dv, dtype=dtype, device=device)  # strided views
    k, v = kv[..., :d], kv[..., d:]
    slots = torch.randperm(slots_total, device=device)[:t]
    k_ref, v_ref = k_cache.clone(), v_cache.clone()
    ref.store_kv(k_ref, v_ref, k, v, slots)
    tk.store_kv(k_cache, v_cache, k, v, slots)
    assert torch.equal(k_cache, k_ref) and torch.equal(v_cache, v_ref)


def test_triton_ops_counts_calls(device):
    ops = TritonOps()
    x = torch.randn(3, 32, device=device)
    w = torch.ones(32, device=device)
    assert rel_err(ops.rms_norm(x, w, 1e-6), ref.rms_norm(x, w, 1e-6)) < TOL[torch.float32]
    ops.silu_and_mul(x)
    assert ops.calls["rms_norm"] == 1 and ops.calls["silu_and_mul"] == 1
    assert ops.provider == "triton"
