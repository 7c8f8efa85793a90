"""The one-launch Triton q/k rotary, with and without the per-head RMSNorm (Qwen3's q/k norm),
against the reference composition computed in fp32 from upcast inputs.

Tolerance, elementwise, with ``u`` the unit roundoff of the dtype (2^-24 fp32, 2^-8 bf16,
2^-11 fp16) and ``xn``/``xp`` the fp32 normed element and its rotation partner:

* the kernel rounds once, at the end: ``|out - ref| <= 2u |ref| + 1e-5 (|xn| + |xp|)`` (2u: a
  whole ulp, as the interpreter's casts may truncate; the second term is fp32 reordering);
* the default composition (``KernelOps.norm_rotary``: rms_norm rounded to the dtype, then
  rotary) adds one rounding of ``xn`` and ``xp``: ``2u (|ref| + |xn| + |xp|)`` bounds it.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed (pip install anyware[cuda])")

from anyware.kernels import reference as ref
from anyware.kernels.triton import rotary as tr
from anyware.kernels.triton.ops import TritonOps

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
UNIT = {torch.float32: 2.0**-24, torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}
EPS = 1e-6


def _partner(d: int, rot: int, is_neox: bool) -> torch.Tensor:
    idx = torch.arange(d)
    half = rot // 2
    p = torch.where(idx < half, idx + half, idx - half) if is_neox else idx ^ 1
    return torch.where(idx < rot, p, idx)


def _reference(q, k, pos, cos_sin, is_neox, qw, kw):
    """fp32 reference from upcast inputs: (q_ref, k_ref), and the normed fp32 (q, k)."""
    qf, kf = q.detach().cpu().float(), k.detach().cpu().float()
    if qw is not None:
        d = q.shape[-1]
        qf = ref.rms_norm(qf.reshape(-1, d), qw.cpu().float(), EPS).view(qf.shape)
        kf = ref.rms_norm(kf.reshape(-1, d), kw.cpu().float(), EPS).view(kf.shape)
    q_ref, k_ref = ref.apply_rotary(qf, kf, pos.cpu(), cos_sin.cpu(), is_neox)
    return (q_ref, k_ref), (qf, kf)


def _check(out, want, xn, is_neox, rot, dtype, intermediate_rounding=False):
    """Assert the elementwise bound above; returns the max abs error."""
    assert out.dtype == dtype and out.shape == want.shape and out.is_contiguous()
    o = out.detach().cpu().double()
    assert not torch.isnan(o).any(), "NaN in output (unwritten element?)"
    xn = xn.double()
    mag = xn.abs() + xn[..., _partner(xn.shape[-1], rot, is_neox)].abs()
    w = want.double()
    u = UNIT[dtype]
    bound = 2 * u * (w.abs() + mag) if intermediate_rounding else 2 * u * w.abs() + 1e-5 * mag
    err = (o - w).abs()
    worst = int((err - bound).flatten().argmax()) if err.numel() else 0
    assert (err <= bound + 1e-7).all(), (
        f"max err {err.max():.3e}; worst excess at flat index {worst}: err "
        f"{err.flatten()[worst]:.3e} > bound {bound.flatten()[worst]:.3e}")
    return float(err.max()) if err.numel() else 0.0


def _qkv_views(t, hq, hk, d, dtype, device, scale=3.0):
    """q and k as strided views of one fused QKV output ``[T, (Hq + 2 Hk) D]``."""
    qkv = torch.randn(t, (hq + 2 * hk) * d, device=device).mul(scale).to(dtype)
    q = qkv[:, : hq * d].view(t, hq, d)
    k = qkv[:, hq * d : (hq + hk) * d].view(t, hk, d)
    return q, k


def _weights(d, dtype, device):
    return ((torch.randn(d, device=device) * 0.5 + 1).to(dtype),
            (torch.randn(d, device=device) * 0.5 + 1).to(dtype))


@pytest.mark.parametrize("norm", [True, False], ids=["norm", "plain"])
@pytest.mark.parametrize("hq,hk", [(4, 2), (8, 1)], ids=["gqa4-2", "gqa8-1"])
@pytest.mark.parametrize("d,rot", [(64, 64), (64, 32), (80, 80)], ids=["d64", "d64-rot32", "d80"])
@pytest.mark.parametrize("is_neox", [True, False], ids=["neox", "gptj"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: str(t).removeprefix("torch."))
def test_norm_rotary_strided(device, dtype, is_neox, d, rot, hq, hk, norm):
    t, max_pos = 9, 300
    q, k = _qkv_views(t, hq, hk, d, dtype, device)
    assert q.stride(0) == (hq + 2 * hk) * d  # really strided
    qw, kw = _weights(d, dtype, device) if norm else (None, None)
    cos_sin = ref.rope_cos_sin(rot, max_pos, 10000.0).to(device)
    pos = torch.randint(0, max_pos, (t,), device=device)
    q_out, k_out = tr.norm_rotary(q, k, pos, cos_sin, is_neox, qw, kw, EPS)
    (q_ref, k_ref), (qn, kn) = _reference(q, k, pos, cos_sin, is_neox, qw, kw)
    _check(q_out, q_ref, qn, is_neox, rot, dtype)
    _check(k_out, k_ref, kn, is_neox, rot, dtype)
    if not norm and rot < d:  # dims past rot_dim pass through untouched
        assert torch.equal(q_out[..., rot:], q[..., rot:])
        assert torch.equal(k_out[..., rot:], k[..., rot:])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: str(t).removeprefix("torch."))
@pytest.mark.parametrize("pos_dtype", [torch.int64, torch.int32])
@pytest.mark.parametrize("t", [0, 1, 5])
def test_norm_rotary_contiguous_and_token_counts(device, dtype, pos_dtype, t):
    hq, hk, d, max_pos = 4, 2, 64, 4096
    q = (torch.randn(t, hq, d, device=device) * 2).to(dtype)
    k = (torch.randn(t, hk, d, device=device) * 2).to(dtype)
    qw, kw = _weights(d, dtype, device)
    cos_sin = ref.rope_cos_sin(d, max_pos, 1e6).to(device)
    pos = torch.randint(0, max_pos, (t,), device=device).to(pos_dtype)
    q_in, k_in = q.clone(), k.clone()
    q_out, k_out = tr.norm_rotary(q, k, pos, cos_sin, True, qw, kw, EPS)
    assert q_out.shape == (t, hq, d) and k_out.shape == (t, hk, d)
    (q_ref, k_ref), (qn, kn) = _reference(q, k, pos, cos_sin, True, qw, kw)
    _check(q_out, q_ref, qn, True, d, dtype)
    _check(k_out, k_ref, kn, True, d, dtype)
    assert torch.equal(q, q_in) and torch.equal(k, k_in)  # out of place
    q2, k2 = tr.apply_rotary(q, k, pos, cos_sin, False)  # no norm, GPT-J
    (q_ref, k_ref), (qn, kn) = _reference(q, k, pos, cos_sin, False, None, None)
    _check(q2, q_ref, qn, False, d, dtype)
    _check(k2, k_ref, kn, False, d, dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bfloat16", "float16"])
def test_default_composition_within_stated_tolerance(device, dtype):
    """The base-class default (rms_norm rounded, then rotary) meets the looser bound and the
    fused kernel the tighter one, on the same inputs: the tolerances above are the right ones."""
    t, hq, hk, d = 16, 8, 1, 128
    q, k = _qkv_views(t, hq, hk, d, dtype, device)
    qw, kw = _weights(d, dtype, device)
    cos_sin = ref.rope_cos_sin(d, 512, 1e6).to(device)
    pos = torch.randint(0, 512, (t,), device=device)
    (q_ref, k_ref), (qn, kn) = _reference(q, k, pos, cos_sin, True, qw, kw)
    q_def, k_def = ref.ReferenceOps().norm_rotary(q.cpu(), k.cpu(), pos.cpu(), cos_sin.cpu(), True,
                                                   qw.cpu(), kw.cpu(), EPS)
    _check(q_def, q_ref, qn, True, d, dtype, intermediate_rounding=True)
    _check(k_def, k_ref, kn, True, d, dtype, intermediate_rounding=True)
    q_out, k_out = tr.norm_rotary(q, k, pos, cos_sin, True, qw, kw, EPS)
    _check(q_out, q_ref, qn, True, d, dtype)
    _check(k_out, k_ref, kn, True, d, dtype)


def test_triton_ops_counters_and_arguments(device):
    ops = TritonOps()
    t, hq, hk, d = 3, 4, 2, 32
    q, k = _qkv_views(t, hq, hk, d, torch.float32, device)
    qw, kw = _weights(d, torch.float32, device)
    cos_sin = ref.rope_cos_sin(d, 16, 10000.0).to(device)
    pos = torch.arange(t, device=device)
    ops.norm_rotary(q, k, pos, cos_sin, True, qw, kw, EPS)
    assert ops.calls["norm_rotary"] == 1 and ops.calls["rms_norm"] == 0
    assert ops.calls["rotary"] == 0
    ops.rotary(q, k, pos, cos_sin, True)
    assert ops.calls["rotary"] == 1 and ops.calls["norm_rotary"] == 1
    with pytest.raises(ValueError, match="both q_weight and k_weight"):
        ops.norm_rotary(q, k, pos, cos_sin, True, qw, None)


class _Recorder:
    """Stands in for the JIT kernel: records each launch's grid and launches nothing."""

    def __init__(self):
        self.grids = []

    def __getitem__(self, grid):
        self.grids.append(grid)
        return lambda *args, **kwargs: None


@pytest.mark.parametrize("norm", [True, False], ids=["norm", "plain"])
def test_one_launch_and_no_other_device_work(device, monkeypatch, norm):
    """q and k (strided views, bf16, int64 positions, fp32 cos/sin) take exactly one kernel
    launch and no other tensor op than allocating the two outputs: no copies, no host sync."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.seen.append(str(func))
            return func(*args, **(kwargs or {}))

    t, hq, hk, d = 7, 8, 1, 64
    q, k = _qkv_views(t, hq, hk, d, torch.bfloat16, device)
    qw, kw = _weights(d, torch.bfloat16, device) if norm else (None, None)
    cos_sin = ref.rope_cos_sin(d, 64, 10000.0).to(device)
    pos = torch.randint(0, 64, (t,), device=device)
    rec = _Recorder()
    monkeypatch.setattr(tr, "_rotary_kernel", rec)
    with Ops() as mode:
        tr.norm_rotary(q, k, pos, cos_sin, True, qw, kw, EPS)
    assert rec.grids == [(t, 2 + 1)]  # 8 q heads in blocks of 4, then 1 k head
    assert set(mode.seen) <= {"aten.empty.memory_format"}, mode.seen
