"""The fused-MoE Triton kernel vs the float64 dense reference (CPU: Triton interpreter, small
shapes; GPU: the same tests), and the alignment's invariants."""

from __future__ import annotations

import pytest
import torch
from anyware.kernels.reference import moe_dense, moe_route
from anyware.kernels.triton.moe import expert_gemms, fused_moe, moe_align, moe_align_reference
from anyware.kernels.triton.moe_config import get_config, heuristic_config
from anyware.plugin import MoESpec, MoEWeightLayout

from tests.kernels._helpers import TOL, rel_err

SMALL = {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 32, "GROUP_M": 2, "num_warps": 4, "num_stages": 2}
CASES = {  # tokens, hidden, intermediate, experts, top_k
    "e8-k2": (13, 64, 48, 8, 2),
    "e4-k1-uneven": (9, 32, 40, 4, 1),
    "e16-k8": (5, 48, 32, 16, 8),
    "e32-k2-empty": (2, 32, 32, 32, 2),
}


def _layer(case, dtype, device, multiple=1):
    t, h, inter, e, k = CASES[case]
    spec = MoESpec(e, k, h, inter, dtype)
    gate = torch.randn(e, inter, h) * h**-0.5
    up = torch.randn(e, inter, h) * h**-0.5
    down = torch.randn(e, h, inter) * inter**-0.5
    w13, w2 = MoEWeightLayout(intermediate_multiple=multiple).pack(
        gate.to(dtype).to(device), up.to(dtype).to(device), down.to(dtype).to(device), spec)
    x = torch.randn(t, h).to(dtype).to(device)
    logits = torch.randn(t, e, device=device) * 2
    if case.endswith("uneven"):  # most tokens prefer expert 0
        logits[:, 0] += 3.0
    weights, ids = moe_route(logits, k, True)
    dense13 = torch.cat([gate, up], 1).to(dtype).float()
    want = moe_dense(x.cpu(), weights.cpu(), ids.cpu(), dense13, down.to(dtype).float())
    return x, weights, ids, w13, w2, want


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", list(CASES))
def test_fused_moe_matches_dense_reference(device, case, dtype):
    x, weights, ids, w13, w2, want = _layer(case, dtype, device)
    out = fused_moe(x, weights, ids, w13, w2, SMALL)
    assert out.dtype == dtype and out.shape == want.shape
    assert rel_err(out, want) < TOL[dtype]


def test_padded_layout_and_unweighted_rows(device):
    """A layout padded to 64 gives the same result; ``expert_gemms`` without weights returns
    each pair's unweighted row."""
    x, weights, ids, w13, w2, want = _layer("e8-k2", torch.float32, device, multiple=64)
    assert w13.shape[1] == 128 and w2.shape[2] == 64
    out = fused_moe(x, weights, ids, w13, w2, SMALL)
    assert rel_err(out, want) < TOL[torch.float32]
    rows = expert_gemms(x, ids.reshape(-1), ids.shape[1], w13, w2, 8, SMALL)
    combined = (rows.view(*ids.shape, -1) * weights[..., None]).sum(1)
    assert rel_err(combined, want) < TOL[torch.float32]


def test_align_pads_each_expert_to_whole_blocks():
    ids = torch.tensor([3, 0, 3, 3, 1, 0, 3], dtype=torch.int32)
    sorted_ids, block_expert, used = moe_align(ids, num_experts=5, block_m=4)
    assert int(used) == 12  # experts 0, 1, 3: 2 + 1 + 4 rows -> 4 + 4 + 4
    assert sorted_ids.numel() == 24  # bound: 7 + min(5, 7) * 3, rounded up to a block
    blocks = sorted_ids[:12].view(3, 4)
    assert block_expert[:3].tolist() == [0, 1, 3]
    for b, e in zip(blocks, block_expert[:3].tolist()):
        real = b[b < 7]
        assert all(int(ids[p]) == e for p in real)
    assert sorted(sorted_ids[sorted_ids < 7].tolist()) == list(range(7))


@pytest.mark.parametrize(("pairs", "experts", "block_m"), [(16, 8, 16), (600, 128, 16),
                                                          (40, 64, 32), (8, 128, 16)])
def test_align_kernel_matches_torch_alignment(device, pairs, experts, block_m):
    """Same padded runs, block experts and used length as the torch version; within a block
    the order is free."""
    ids = torch.randint(0, experts, (pairs,), dtype=torch.int32, device=device)
    got, want = moe_align(ids, experts, block_m), moe_align_reference(ids, experts, block_m)
    used = int(want[2])
    assert int(got[2]) == used and got[0].shape == want[0].shape
    assert torch.equal(got[1][: used // block_m], want[1][: used // block_m])
    assert torch.equal(got[0][:used].view(-1, block_m).sort(1).values,
                       want[0][:used].view(-1, block_m).sort(1).values)
    assert bool((got[0][used:] == pairs).all())


def test_config_tables_and_heuristic():
    small = heuristic_config(1, 128, 8, torch.bfloat16)
    big = heuristic_config(4096, 128, 8, torch.bfloat16)
    assert small["BLOCK_M"] <= big["BLOCK_M"]
    # a shipped table is used for its device, the heuristic elsewhere
    cfg = get_config(1, 128, 768, 8, torch.bfloat16, device="NVIDIA_H200")
    assert {"BLOCK_M", "BLOCK_N", "BLOCK_K", "GROUP_M"} <= set(cfg)
    assert get_config(1, 3, 5, 1, torch.bfloat16, device="nowhere") == heuristic_config(
        1, 3, 1, torch.bfloat16)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_backend_stages_and_fused_forward(device, dtype):
    """``TritonMoEBackend``: ``experts`` on dispatched rows is unweighted, combine applies the
    weights, and the fused ``forward`` equals the staged path and the dense reference."""
    from anyware.kernels.triton.moe_backend import TritonMoEBackend

    x, _, _, w13, w2, _ = _layer("e16-k8", dtype, device)
    spec = MoESpec(16, 8, 48, 32, dtype)
    backend = TritonMoEBackend(None, spec)
    logits = torch.randn(x.shape[0], 16, device=device)
    weights, ids = backend.route(logits)
    d = backend.dispatch(x, weights, ids)
    staged = backend.combine(backend.experts(d, w13, w2), d)
    fused = backend.forward(x, logits, w13, w2)
    dense13 = w13.float().cpu()
    want = moe_dense(x.cpu(), weights.cpu(), ids.cpu(), dense13, w2.float().cpu())
    assert rel_err(staged, want) < TOL[dtype] and rel_err(fused, want) < TOL[dtype]
    assert backend.calls["experts"] == backend.calls["forward"] == 1


@pytest.mark.parametrize(("scoring", "renorm", "scale"), [("softmax", True, 1.0),
                                                          ("softmax", False, 1.0),
                                                          ("sigmoid", True, 2.5)])
@pytest.mark.parametrize(("experts", "top_k"), [(8, 2), (60, 8), (4, 1)])
def test_route_kernel_matches_reference(device, scoring, renorm, scale, experts, top_k):
    from anyware.kernels.triton.moe_route import route

    logits = torch.randn(23, experts, device=device) * 2
    w, ids = route(logits, top_k, renorm, scoring, scale)
    w_ref, ids_ref = moe_route(logits, top_k, renorm, scoring, scale)
    ids_s, order = ids.long().sort(-1)
    ids_ref_s, order_ref = ids_ref.long().sort(-1)
    assert ids.dtype == torch.int32 and torch.equal(ids_s, ids_ref_s)
    torch.testing.assert_close(w.gather(1, order), w_ref.gather(1, order_ref), atol=1e-6, rtol=1e-5)
