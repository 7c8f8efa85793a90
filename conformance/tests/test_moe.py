"""Tier moe: softmax top-k routing (``KernelOps.moe_route``), the platform's token dispatcher,
its expert compute and the combine, against a dense fp32 reference: every token's output is
the routing-weighted sum of its experts' gated MLPs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from anyware.kernels import reference as ref
from anyware_conformance.inputs import DTYPES, randn

CASES = {  # (tokens, hidden, intermediate, experts, top_k)
    "e8-k2": (37, 64, 96, 8, 2),
    "e16-k4": (29, 128, 64, 16, 4),
}


def dense_reference(x, weights, ids, w13, w2):
    out = torch.zeros((x.shape[0], w2.shape[1]), dtype=torch.float64)
    for t in range(x.shape[0]):
        for j in range(ids.shape[1]):
            e = int(ids[t, j])
            gate_up = w13[e].double() @ x[t].double()
            inter = gate_up.shape[0] // 2
            h = F.silu(gate_up[:inter]) * gate_up[inter:]
            out[t] += float(weights[t, j]) * (w2[e].double() @ h)
    return out


@pytest.mark.anyware(tier="moe", capability="moe.route", needs=("moe",))
@pytest.mark.parametrize("renormalize", [True, False], ids=["renorm", "raw"])
def test_moe_route(platform, conf, gen, renormalize):
    ops, dev = platform.ops(), platform.device
    logits = randn(gen, (41, 16), "float32", dev, 2.0)
    with conf.runs(ops, "moe_route"):
        w, ids = ops.moe_route(logits, 4, renormalize)
    conf.on_device("moe_route", w, ids)
    w_ref, ids_ref = ref.moe_route(logits.cpu(), 4, renormalize)
    # compare as sets per token (the order among the k experts is free)
    ids_s, order = ids.cpu().long().sort(dim=-1)
    ids_ref_s, order_ref = ids_ref.long().sort(dim=-1)
    conf.equal("expert ids", ids_s, ids_ref_s, op="moe_route")
    conf.close("routing weights", w.cpu().gather(1, order), w_ref.gather(1, order_ref),
               op="moe_route", dtype="float32", reduction=16)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.anyware(tier="moe", capability="moe.experts", needs=("moe", "dtype"))
def test_moe(platform, conf, gen, dtype, case):
    t, h, inter, e, k = CASES[case]
    ops, dev = platform.ops(), platform.device
    x = randn(gen, (t, h), dtype, dev)
    w13 = randn(gen, (e, 2 * inter, h), dtype, dev, h**-0.5)
    w2 = randn(gen, (e, h, inter), dtype, dev, inter**-0.5)
    logits = randn(gen, (t, e), "float32", dev)
    weights, ids = ops.moe_route(logits, k, True)
    dispatcher = platform.token_dispatcher(e)
    experts = platform.moe_experts()
    dispatched = dispatcher.dispatch(x, weights, ids)
    assert int(dispatched.expert_counts.sum()) == t * k, (
        f"dispatcher produced {int(dispatched.expert_counts.sum())} rows for {t} tokens x {k}"
    )
    with conf.runs(experts):
        y = experts.forward(dispatched, w13, w2)
    out = dispatcher.combine(y, dispatched)
    conf.on_device("moe output", out)
    want = dense_reference(x.cpu(), weights.cpu(), ids.cpu(), w13.cpu(), w2.cpu())
    conf.close("moe output", out, want, op="moe", dtype=dtype, reduction=h + inter)
