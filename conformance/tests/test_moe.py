"""Tier moe: the platform's :class:`MoEBackend`, stage by stage and whole, against references.

* route: the chosen experts (as a set per token) and their weights vs the torch reference,
  for softmax and sigmoid scoring, with and without renormalisation;
* dispatch + combine: pure data movement checked with expert-tagged rows (rows sorted by
  expert consistently with ``expert_counts``; combine applies each routing weight once);
* experts: each dispatched row through its expert's gated MLP, unweighted, vs fp32;
* forward: the whole layer vs a float64 dense reference (weights packed by the backend's own
  :class:`MoEWeightLayout`, so padding layouts are exercised too).

* fp8 experts (when a MoE backend of the platform declares ``"fp8"``): ``experts`` and
  ``forward`` of an fp8 spec vs the reference fp8 backend (the contract's oracle) on the same
  e4m3 weights and per-row scales, in the backend's own layout.

Cases cover several (experts, top-k, hidden, intermediate) shapes, top-k 1 to 8, and a batch
so small that most experts get no token.
"""

from __future__ import annotations

import pytest
import torch
from anyware.kernels import reference as ref
from anyware.kernels.reference.moe import grouped_expert_mlp, grouped_expert_mlp_fp8
from anyware.plugin import MoESpec
from anyware_conformance.inputs import DTYPES, randn

CASES = {  # (tokens, hidden, intermediate, experts, top_k)
    "e8-k2": (37, 64, 96, 8, 2),
    "e16-k4": (29, 128, 64, 16, 4),
    "e4-k1": (23, 32, 48, 4, 1),
    "e64-k8": (19, 64, 32, 64, 8),
    "e32-k2-sparse": (3, 48, 40, 32, 2),  # at most 6 of 32 experts get a row
}
ROUTES = {  # id: (scoring, renormalize, routed_scaling_factor)
    "softmax-renorm": ("softmax", True, 1.0),
    "softmax-raw": ("softmax", False, 1.0),
    "sigmoid-renorm-scaled": ("sigmoid", True, 2.5),
}


def _backend(platform, case: str, dtype, **kw):
    _, h, inter, e, k = CASES[case]
    spec = MoESpec(e, k, h, inter, getattr(torch, dtype) if isinstance(dtype, str) else dtype, **kw)
    return platform.moe_backend(spec), spec


def _weights(gen, backend, spec, dev):
    """Random experts packed in the backend's layout; also returns the dense fp32 copies."""
    e, h, inter = spec.num_experts, spec.hidden_size, spec.intermediate_size
    gate = randn(gen, (e, inter, h), spec.dtype, "cpu", h**-0.5)
    up = randn(gen, (e, inter, h), spec.dtype, "cpu", h**-0.5)
    down = randn(gen, (e, h, inter), spec.dtype, "cpu", inter**-0.5)
    layout = backend.weight_layout()
    w13, w2 = layout.pack(gate.to(dev), up.to(dev), down.to(dev), spec)
    dense13 = torch.cat([gate, up], dim=1).float()
    return w13, w2, dense13, down.float()


def _routing(gen, spec, t, dev, ops_backend):
    logits = randn(gen, (t, spec.num_experts), "float32", dev, 2.0)
    return ops_backend.route(logits)


def _row_experts(counts: torch.Tensor) -> torch.Tensor:
    counts = counts.cpu().long()
    return torch.repeat_interleave(torch.arange(counts.numel()), counts)


@pytest.mark.anyware(tier="moe", capability="moe.route", needs=("moe",))
@pytest.mark.parametrize("route", list(ROUTES))
def test_moe_route(platform, conf, gen, route):
    scoring, renorm, scale = ROUTES[route]
    backend, _ = _backend(platform, "e16-k4", "float32", scoring=scoring, renormalize=renorm,
                             routed_scaling_factor=scale)
    logits = randn(gen, (41, 16), "float32", platform.device, 2.0)
    with conf.runs(backend, "route"):
        w, ids = backend.route(logits)
    conf.on_device("moe route", w, ids)
    assert w.dtype == torch.float32 and ids.dtype == torch.int32, (w.dtype, ids.dtype)
    assert tuple(w.shape) == tuple(ids.shape) == (41, 4), (tuple(w.shape), tuple(ids.shape))
    w_ref, ids_ref = ref.moe_route(logits.cpu(), 4, renorm, scoring, scale)
    # compare as sets per token (the order among the k experts is free)
    ids_s, order = ids.cpu().long().sort(dim=-1)
    ids_ref_s, order_ref = ids_ref.long().sort(dim=-1)
    conf.equal("expert ids", ids_s, ids_ref_s, op="moe_route")
    conf.close("routing weights", w.cpu().gather(1, order), w_ref.gather(1, order_ref),
               op="moe_route", dtype="float32", reduction=16)


@pytest.mark.anyware(tier="moe", capability="moe.dispatch", needs=("moe",))
@pytest.mark.parametrize("case", list(CASES))
def test_moe_dispatch_combine(platform, conf, gen, case):
    t, h, _, e, k = CASES[case]
    backend, _ = _backend(platform, case, "float32")
    dev = platform.device
    x = randn(gen, (t, h), "float32", dev)
    weights, ids = ref.moe_route(randn(gen, (t, e), "float32", "cpu", 2.0), k, True)
    weights, ids = weights.to(dev), ids.to(dev)
    with conf.runs(backend, "dispatch"):
        d = backend.dispatch(x, weights, ids)
    conf.on_device("dispatched rows", d.hidden, d.expert_counts, d.weights)
    want_counts = torch.bincount(ids.cpu().long().reshape(-1), minlength=e)
    conf.equal("rows per expert", d.expert_counts.cpu().long(), want_counts, op="moe_dispatch")
    assert tuple(d.hidden.shape) == (t * k, h), tuple(d.hidden.shape)
    # tag each row with its expert (from the counts): combine must give sum_j w * (1 + id) * x
    tag = (1.0 + _row_experts(d.expert_counts)).to(dev)[:, None]
    with conf.runs(backend, "combine"):
        out = backend.combine(d.hidden * tag, d)
    conf.on_device("combined", out)
    want = (weights.cpu().double() * (1.0 + ids.cpu().double())).sum(1, keepdim=True) * x.cpu().double()
    conf.close("combined rows", out, want, op="moe", dtype="float32", reduction=k)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.anyware(tier="moe", capability="moe.experts", needs=("moe", "dtype"))
def test_moe_experts(platform, conf, gen, dtype, case):
    t, h, inter, _, k = CASES[case]
    backend, spec = _backend(platform, case, dtype)
    dev = platform.device
    w13, w2, dense13, down = _weights(gen, backend, spec, dev)
    x = randn(gen, (t, h), dtype, dev)
    weights, ids = _routing(gen, spec, t, dev, backend)
    d = backend.dispatch(x, weights, ids)
    with conf.runs(backend, "experts"):
        y = backend.experts(d, w13, w2)
    conf.on_device("expert rows", y)
    assert y.dtype == x.dtype and tuple(y.shape) == (t * k, h), (y.dtype, tuple(y.shape))
    counts = d.expert_counts.cpu()
    want = grouped_expert_mlp(d.hidden.cpu().float(), counts, _row_experts(counts), dense13, down)
    conf.close("expert rows (unweighted)", y, want, op="moe", dtype=dtype, reduction=h + inter)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.anyware(tier="moe", capability="moe.forward", needs=("moe", "dtype"))
def test_moe(platform, conf, gen, dtype, case):
    t, h, inter, e, k = CASES[case]
    backend, spec = _backend(platform, case, dtype)
    dev = platform.device
    w13, w2, dense13, down = _weights(gen, backend, spec, dev)
    x = randn(gen, (t, h), dtype, dev)
    logits = randn(gen, (t, e), "float32", dev, 2.0)
    with conf.runs(backend, "forward"):
        out = backend.forward(x, logits, w13, w2)
    conf.on_device("moe output", out)
    assert out.dtype == x.dtype and tuple(out.shape) == (t, h), (out.dtype, tuple(out.shape))
    weights, ids = ref.moe_route(logits.cpu(), k, True)
    want = ref.moe_dense(x.cpu(), weights, ids, dense13, down)
    conf.close("moe output", out, want, op="moe", dtype=dtype, reduction=h + inter)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.anyware(tier="moe", capability="moe.fp8",
                     needs=("moe", "dtype", "moe.quantization.fp8"))
def test_moe_fp8(platform, conf, gen, dtype, case):
    """W8A8 e4m3 experts (``MoESpec.quantization = "fp8"``): rows quantised per row, e4m3
    GEMMs with fp32 accumulation and per-row weight scales, the intermediate rounded to the
    dtype and re-quantised; stage ``experts`` (unweighted) and the whole ``forward``."""
    t, h, inter, e, k = CASES[case]
    backend, spec = _backend(platform, case, dtype, quantization="fp8")
    dev = platform.device
    w13, w2, _, _ = _weights(gen, backend, spec, dev)
    w13, w2, scales = ref.quantize_experts_fp8(w13, w2)  # torch ops, on the device
    host = (w13.cpu(), w2.cpu(), tuple(s.cpu() for s in scales))
    oracle = ref.ReferenceMoEBackend(None, spec)
    x = randn(gen, (t, h), dtype, dev)
    logits = randn(gen, (t, e), "float32", dev, 2.0)
    with conf.runs(backend, "forward"):
        out = backend.forward(x, logits, w13, w2, scales=scales)
    conf.on_device("moe fp8 output", out)
    assert out.dtype == x.dtype and tuple(out.shape) == (t, h), (out.dtype, tuple(out.shape))
    want = oracle.forward(x.cpu(), logits.cpu(), *host)
    conf.close("moe fp8 output", out, want, op="moe_fp8", dtype=dtype, reduction=h + inter)

    d = backend.dispatch(x, *backend.route(logits))
    with conf.runs(backend, "experts"):
        y = backend.experts(d, w13, w2, scales=scales)
    conf.on_device("fp8 expert rows", y)
    assert y.dtype == x.dtype and tuple(y.shape) == (t * k, h), (y.dtype, tuple(y.shape))
    counts = d.expert_counts.cpu()
    want = grouped_expert_mlp_fp8(d.hidden.cpu(), counts, _row_experts(counts), *host[:2],
                                  *host[2])
    conf.close("fp8 expert rows (unweighted)", y, want, op="moe_fp8", dtype=dtype,
               reduction=h + inter)
