"""Tier ops: norm, fused add + norm, rotary, q/k norm + rotary, gated activation, KV store
and the fp8 linear layer against the torch reference (``anyware.kernels.reference``) run in
fp32 on the same inputs."""

from __future__ import annotations

import pytest
import torch
from anyware.kernels import reference as ref
from anyware.kernels.reference import quant
from anyware_conformance.inputs import DTYPES, randn, randperm, upcast

pytestmark = pytest.mark.parametrize("dtype", DTYPES)


def mark(capability: str, **kw):
    return pytest.mark.anyware(tier="ops", capability=capability, needs=("dtype",), **kw)


@mark("ops.rms_norm")
@pytest.mark.parametrize(
    "hidden,eps,scale", [(64, 1e-6, 1.0), (4096, 1e-5, 1.0), (128, 1e-2, 0.1)],
    ids=["h64", "h4096", "h128-large-eps"],
)
def test_rms_norm(platform, conf, gen, dtype, hidden, eps, scale):
    ops, dev = platform.ops(), platform.device
    x = randn(gen, (7, hidden), dtype, dev, scale)
    w = randn(gen, (hidden,), dtype, dev, 0.5) + 1
    with conf.runs(ops, "rms_norm"):
        out = ops.rms_norm(x, w, eps)
    conf.on_device("rms_norm", out)
    assert out.dtype == x.dtype, f"rms_norm returned {out.dtype}, expected {x.dtype}"
    conf.close("rms_norm", out, ref.rms_norm(upcast(x), upcast(w), eps), op="rms_norm",
               dtype=dtype, reduction=hidden)


@mark("ops.fused_add_rms_norm")
@pytest.mark.parametrize("hidden,eps", [(256, 1e-6), (64, 1e-2)], ids=["h256", "h64-large-eps"])
def test_fused_add_rms_norm(platform, conf, gen, dtype, hidden, eps):
    ops, dev = platform.ops(), platform.device
    x = randn(gen, (9, hidden), dtype, dev, 0.3)
    res = randn(gen, (9, hidden), dtype, dev, 0.3)
    w = randn(gen, (hidden,), dtype, dev, 0.5) + 1
    with conf.runs(ops, "fused_add_rms_norm"):
        out, r = ops.fused_add_rms_norm(x.clone(), res.clone(), w, eps)
    conf.on_device("fused_add_rms_norm", out, r)
    # contract: r = x + residual rounded to x.dtype, then rms_norm(r) computed in fp32
    r_ref = (upcast(x) + upcast(res)).to(getattr(torch, dtype)).float()
    conf.close("residual", r, r_ref, op="add", dtype=dtype)
    conf.close("normed", out, ref.rms_norm(r_ref, upcast(w), eps), op="rms_norm",
               dtype=dtype, reduction=hidden)


@mark("ops.rotary")
@pytest.mark.parametrize("is_neox", [True, False], ids=["neox", "gptj"])
@pytest.mark.parametrize(
    "head_dim,rot_dim,base", [(64, 64, 10000.0), (128, 128, 1e6), (128, 64, 500000.0)],
    ids=["d64-base1e4", "d128-base1e6", "d128-partial-base5e5"],
)
def test_rotary(platform, conf, gen, dtype, is_neox, head_dim, rot_dim, base):
    ops, dev = platform.ops(), platform.device
    t, hq, hk, max_pos = 11, 4, 2, 4096
    q = randn(gen, (t, hq, head_dim), dtype, dev)
    k = randn(gen, (t, hk, head_dim), dtype, dev)
    positions = torch.randint(0, max_pos, (t,), generator=gen)
    cos_sin = ref.rope_cos_sin(rot_dim, max_pos, base)
    with conf.runs(ops, "rotary"):
        q2, k2 = ops.rotary(q.clone(), k.clone(), positions.to(dev), cos_sin.to(dev), is_neox)
    conf.on_device("rotary", q2, k2)
    q_ref, k_ref = ref.apply_rotary(upcast(q), upcast(k), positions, cos_sin, is_neox)
    conf.close("q", q2, q_ref, op="rotary", dtype=dtype, reduction=2)
    conf.close("k", k2, k_ref, op="rotary", dtype=dtype, reduction=2)


class _NormRotaryRan:
    """``calls``: the platform's ``norm_rotary`` plus ``rotary`` counts. A fused kernel moves
    the first; the ``KernelOps`` default (its own ``rms_norm`` then ``rotary``) the second
    (``rotary`` runs with or without weights); a private reference object moves neither."""

    def __init__(self, ops) -> None:
        self.ops = ops

    @property
    def calls(self) -> int:
        return self.ops.calls["norm_rotary"] + self.ops.calls["rotary"]


@mark("ops.norm_rotary")
@pytest.mark.parametrize("norm", [True, False], ids=["norm", "no-weights"])
@pytest.mark.parametrize("is_neox", [True, False], ids=["neox", "gptj"])
@pytest.mark.parametrize(
    "head_dim,rot_dim,hq,hk", [(128, 128, 4, 2), (64, 64, 8, 1), (128, 64, 4, 2)],
    ids=["d128-gqa2", "d64-gqa8", "d128-partial"],
)
def test_norm_rotary(platform, conf, gen, dtype, is_neox, head_dim, rot_dim, hq, hk, norm):
    ops, dev = platform.ops(), platform.device
    t, max_pos, eps = 11, 4096, 1e-6
    # q and k as strided views of one fused QKV projection output, as a model passes them;
    # scaled so that the norm changes magnitudes (the partner must be the normed one)
    qkv = randn(gen, (t, (hq + 2 * hk) * head_dim), dtype, dev, 2.0)
    q = qkv[:, : hq * head_dim].view(t, hq, head_dim)
    k = qkv[:, hq * head_dim : (hq + hk) * head_dim].view(t, hk, head_dim)
    qw = randn(gen, (head_dim,), dtype, dev, 0.5) + 1 if norm else None
    kw = randn(gen, (head_dim,), dtype, dev, 0.5) + 1 if norm else None
    positions = torch.randint(0, max_pos, (t,), generator=gen)
    cos_sin = ref.rope_cos_sin(rot_dim, max_pos, 1e6)
    with conf.runs(_NormRotaryRan(ops)):
        q2, k2 = ops.norm_rotary(q, k, positions.to(dev), cos_sin.to(dev), is_neox, qw, kw, eps)
    conf.on_device("norm_rotary", q2, k2)
    assert q2.dtype == q.dtype and k2.dtype == k.dtype
    # contract: per-head RMSNorm over the whole head dim in fp32, then rotary (fp32 reference)
    qf, kf = upcast(q), upcast(k)
    if norm:
        qf = ref.rms_norm(qf.reshape(-1, head_dim), upcast(qw), eps).view(qf.shape)
        kf = ref.rms_norm(kf.reshape(-1, head_dim), upcast(kw), eps).view(kf.shape)
    q_ref, k_ref = ref.apply_rotary(qf, kf, positions, cos_sin, is_neox)
    op = "norm_rotary" if norm else "rotary"
    conf.close("q", q2, q_ref, op=op, dtype=dtype, reduction=head_dim)
    conf.close("k", k2, k_ref, op=op, dtype=dtype, reduction=head_dim)


@mark("ops.silu_and_mul")
@pytest.mark.parametrize("inter", [64, 1000])
def test_silu_and_mul(platform, conf, gen, dtype, inter):
    ops, dev = platform.ops(), platform.device
    x = randn(gen, (13, 2 * inter), dtype, dev, 2.0)
    with conf.runs(ops, "silu_and_mul"):
        out = ops.silu_and_mul(x)
    conf.on_device("silu_and_mul", out)
    conf.close("silu_and_mul", out, ref.silu_and_mul(upcast(x)), op="silu_and_mul", dtype=dtype)


@pytest.mark.anyware(tier="ops", capability="ops.store_kv", needs=("kv_dtype",))
@pytest.mark.parametrize("heads,head_dim", [(2, 64), (8, 128)])
def test_store_kv(platform, conf, gen, dtype, heads, head_dim):
    ops, dev = platform.ops(), platform.device
    num_slots, t = 96, 17
    k_cache = randn(gen, (num_slots, heads, head_dim), dtype, dev)
    v_cache = randn(gen, (num_slots, heads, head_dim), dtype, dev)
    k = randn(gen, (t, heads, head_dim), dtype, dev)
    v = randn(gen, (t, heads, head_dim), dtype, dev)
    slots = randperm(gen, num_slots)[:t]
    k_ref, v_ref = k_cache.cpu().clone(), v_cache.cpu().clone()
    k_ref[slots], v_ref[slots] = k.cpu(), v.cpu()
    with conf.runs(ops, "store_kv"):
        ops.store_kv(k_cache, v_cache, k, v, slots.to(dev))
    conf.on_device("store_kv", k_cache, v_cache)
    conf.equal("k_cache", k_cache, k_ref, op="store_kv", dtype=dtype)
    conf.equal("v_cache", v_cache, v_ref, op="store_kv", dtype=dtype)


# token magnitudes, cycled over the rows: six decades and an all-zero row, so one scale for
# the whole activation tensor would flush the small tokens to zero; powers of two so that
# dividing a row by its magnitude (to compare in units of a typical output) is exact
FP8_ROW_MAGNITUDES = (2.0**-10, 2.0**7, 1.0, 0.0, 2.0**-5, 2.0**3, 2.0**-2)


@pytest.mark.anyware(tier="ops", capability="ops.fp8_linear",
                     needs=("dtype", "quantization.fp8"))
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize(
    "t,n,k", [(1, 32, 64), (13, 96, 272), (21, 64, 4096)],
    ids=["t1-n32-k64", "t13-n96-k272", "t21-n64-k4096"],
)
def test_fp8_linear(platform, conf, gen, dtype, t, n, k, bias):
    """W8A8: per-token dynamic e4m3 activations times per-channel e4m3 weights, fp32
    accumulation, both scales (and the bias) applied, in the model dtype."""
    ops, dev = platform.ops(), platform.device
    mags = torch.tensor([FP8_ROW_MAGNITUDES[i % len(FP8_ROW_MAGNITUDES)] for i in range(t)])
    x = randn(gen, (t, k), dtype, "cpu") * mags[:, None].to(getattr(torch, dtype))
    w, w_scale = quant.quantize_fp8_rows(torch.randn((n, k), generator=gen) * k**-0.5)
    b = randn(gen, (n,), dtype, "cpu") if bias else None
    with conf.runs(ops, "fp8_linear"):
        out = ops.fp8_linear(x.to(dev), w.to(dev), w_scale.to(dev),
                             None if b is None else b.to(dev))
    conf.on_device("fp8_linear", out)
    assert out.dtype == x.dtype, f"fp8_linear returned {out.dtype}, expected {x.dtype}"
    assert tuple(out.shape) == (t, n), f"fp8_linear returned shape {tuple(out.shape)}"
    want = quant.fp8_linear(upcast(x), w, w_scale, None if b is None else upcast(b))
    # compare in units of the row's typical output: the token's magnitude, or the bias's (1)
    # where that dominates; powers of two, so the division is exact
    unit = (mags.clamp_min(1.0) if bias else torch.where(mags > 0, mags, 1.0)).double()[:, None]
    conf.close("fp8_linear", upcast(out).double() / unit, want.double() / unit,
               op="fp8_linear", dtype=dtype, reduction=k)


class _ProducerRan:
    """``calls``: a fused producer's own count plus ``quantize_fp8``'s (the ``KernelOps``
    default composes the unfused op and ``quantize_fp8``); a private object moves neither."""

    def __init__(self, ops, name: str) -> None:
        self.ops, self.name = ops, name

    @property
    def calls(self) -> int:
        return self.ops.calls[self.name] + self.ops.calls["quantize_fp8"]


@pytest.mark.anyware(tier="ops", capability="ops.fp8_activations",
                     needs=("dtype", "quantization.fp8"))
@pytest.mark.parametrize("producer,width", [
    ("rms_norm", 64), ("rms_norm", 1000), ("fused_add_rms_norm", 256),
    ("silu_and_mul", 64), ("silu_and_mul", 1000),
])
def test_fp8_producer(platform, conf, gen, dtype, producer, width):
    """``KernelOps.fp8_activations``: a norm or SiLU-and-mul that hands its fp8 projection
    :class:`~anyware.plugin.Fp8Rows` — each row's scale from its own absolute maximum, each
    element the e4m3 rounding of (the op's output in the model dtype) / scale — and an
    ``fp8_linear`` that multiplies those rows as they are."""
    ops, dev = platform.ops(), platform.device
    if not ops.fp8_activations:
        pytest.skip("not applicable: the platform's ops do not quantise in producers "
                    "(KernelOps.fp8_activations is False)")
    t = len(FP8_ROW_MAGNITUDES)
    mags = torch.tensor(FP8_ROW_MAGNITUDES)[:, None]
    cols = width
    if producer == "silu_and_mul":
        # a product of two inputs: their magnitudes' square roots, the smallest raised so that
        # the products stay clear of fp16's subnormals relative to the row's e4m3 quantum
        mags, cols = torch.where(mags > 0, mags.sqrt().clamp_min(2.0**-3), 0.0), 2 * width
    # decades apart, and an all-zero row
    x = randn(gen, (t, cols), dtype, "cpu") * mags.to(getattr(torch, dtype))
    w = randn(gen, (width,), dtype, "cpu", 0.5) + 1
    res = randn(gen, (t, width), dtype, "cpu", 0.3)
    with conf.runs(_ProducerRan(ops, f"{producer}_fp8")):
        if producer == "rms_norm":
            rows = ops.rms_norm_fp8(x.to(dev), w.to(dev), 1e-6)
        elif producer == "fused_add_rms_norm":
            rows, r = ops.fused_add_rms_norm_fp8(x.to(dev), res.to(dev), w.to(dev), 1e-6)
        else:
            rows = ops.silu_and_mul_fp8(x.to(dev))
    conf.on_device(f"{producer}_fp8", rows.data, rows.scale)
    assert rows.dtype == x.dtype, f"Fp8Rows.dtype {rows.dtype}, expected {x.dtype}"
    assert rows.data.dtype == torch.float8_e4m3fn and rows.scale.dtype == torch.float32
    assert tuple(rows.data.shape) == (t, width) and tuple(rows.scale.shape) == (t,)
    if producer == "rms_norm":
        want = ref.rms_norm(upcast(x), upcast(w), 1e-6)
    elif producer == "fused_add_rms_norm":
        r_ref = (upcast(x) + upcast(res)).to(x.dtype).float()
        conf.close("residual", r, r_ref, op="add", dtype=dtype)
        want = ref.rms_norm(r_ref, upcast(w), 1e-6)
    else:
        want = ref.silu_and_mul(upcast(x))
    scale = rows.scale.cpu()
    amax = want.abs().amax(-1).clamp_min(quant.MIN_AMAX)
    conf.close("scale * 448", scale.double() * quant.FP8_MAX, amax.double(), op=producer,
               dtype=dtype, reduction=width)
    # in units of the row's own scale: e4m3 codes against the exact quotient
    conf.close("e4m3 codes", upcast(rows.data).double(), (want / scale[:, None]).double(),
               op="fp8_rows", dtype=dtype)
    wq, ws = quant.quantize_fp8_rows(torch.randn((48, width), generator=gen) * width**-0.5)
    with conf.runs(ops, "fp8_linear"):
        out = ops.fp8_linear(rows, wq.to(dev), ws.to(dev))
    assert out.dtype == x.dtype and tuple(out.shape) == (t, 48)
    host = type(rows)(rows.data.cpu(), scale, torch.float32)
    unit = (scale.double() * quant.FP8_MAX)[:, None]  # in units of each row's amax
    conf.close("fp8_linear of the rows", upcast(out).double() / unit,
               quant.fp8_linear(host, wq, ws).double() / unit, op="fp8_linear", dtype=dtype,
               reduction=width)
