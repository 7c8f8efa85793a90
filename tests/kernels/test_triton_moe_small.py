"""The decode-sized fused-MoE path (routing recomputed per program, GEMVs, combine in the down
kernel: the k experts as one flat reduction, or walked one by one) vs the float64 dense
reference of the reference routing (CPU: Triton interpreter)."""

from __future__ import annotations

import pytest
import torch
from anyware.kernels.reference import moe_dense, moe_route
from anyware.kernels.triton.moe_small import fused_moe_small, use_small_path
from anyware.plugin import MoESpec, MoEWeightLayout

from tests.kernels._helpers import TOL, rel_err

SMALL = {"BLOCK_N1": 16, "BLOCK_K1": 32, "WARPS1": 4, "BLOCK_N2": 16, "BLOCK_K2": 32, "WARPS2": 4}
CASES = {  # tokens, hidden, intermediate, experts, top_k, scoring, renormalize, scale, multiple
    "t1-e16-k8": (1, 48, 40, 16, 8, "softmax", True, 1.0, 1),
    "t3-e8-k2-pad64": (3, 64, 48, 8, 2, "softmax", False, 1.0, 64),
    "t2-e32-k4-sigmoid": (2, 40, 24, 32, 4, "sigmoid", True, 2.5, 1),
    "t4-e4-k1": (4, 32, 20, 4, 1, "softmax", True, 1.0, 1),
}


@pytest.mark.parametrize("flat", [1, 0], ids=["flat-down", "per-expert-down"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", list(CASES))
def test_small_path_matches_dense_reference(device, case, dtype, flat):
    t, h, inter, e, k, scoring, renorm, scale, multiple = CASES[case]
    spec = MoESpec(e, k, h, inter, dtype)
    gate, up = torch.randn(e, inter, h) * h**-0.5, torch.randn(e, inter, h) * h**-0.5
    down = torch.randn(e, h, inter) * inter**-0.5
    w13, w2 = MoEWeightLayout(intermediate_multiple=multiple).pack(
        gate.to(dtype).to(device), up.to(dtype).to(device), down.to(dtype).to(device), spec)
    x = torch.randn(t, h).to(dtype).to(device)
    logits = (torch.randn(t, e) * 2).to(dtype).to(device)
    weights, ids = moe_route(logits.cpu(), k, renorm, scoring, scale)
    want = moe_dense(x.cpu(), weights, ids, torch.cat([gate, up], 1).to(dtype).float(),
                     down.to(dtype).float())
    out = fused_moe_small(x, logits, w13, w2, k, renorm, scoring, scale, {**SMALL, "FLAT2": flat})
    assert out.dtype == dtype and out.shape == (t, h)
    assert rel_err(out, want) < TOL[dtype]


def test_small_path_threshold_and_bad_scoring(device):
    assert use_small_path(1, 8, 2) and not use_small_path(2, 8, 2)
    assert use_small_path(4, 128, 8) and not use_small_path(5, 128, 8)
    x = torch.zeros(1, 8, device=device)
    w13, w2 = torch.zeros(2, 8, 8, device=device), torch.zeros(2, 8, 4, device=device)
    with pytest.raises(ValueError, match="scoring"):
        fused_moe_small(x, torch.zeros(1, 2, device=device), w13, w2, 1, True, "relu")
