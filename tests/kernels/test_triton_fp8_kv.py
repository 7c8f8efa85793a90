"""An fp8 e4m3 KV cache through the Triton attention backend (store, extend, decode, mixed,
chain and tree verify) against the torch reference backend over the same cache: the stored
bytes are identical (saturated to +-448, nearest even) and the outputs agree to the compute
dtype's tolerance (both read the same fp8 values). CPU: the Triton interpreter."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed (pip install anyware[cuda])")

from _helpers import TOL, rel_err
from anyware.kernels.reference import ReferenceAttentionBackend
from anyware.kernels.triton.attention_backend import TritonAttentionBackend
from anyware.plugin import ForwardMode, SpecInfo
from test_triton_attention_backend import _backend, _random_tree, _run, _setup

FP8 = torch.float8_e4m3fn

CASES = {  # name: (prefix_lens, extend_lens, mode, tree)
    "extend": ([0, 19, 3], [11, 6, 1], ForwardMode.EXTEND, False),
    "decode": ([0, 40, 7, 90], [1, 1, 1, 1], ForwardMode.DECODE, False),
    "mixed": ([0, 17, 40, 5], [9, 4, 1, 1], ForwardMode.MIXED, False),
    "verify": ([21, 50], [3, 3], ForwardMode.VERIFY, False),
    "tree_verify": ([11, 40], [5, 5], ForwardMode.VERIFY, True),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("case", list(CASES))
def test_fp8_kv_matches_reference(device, case, dtype):
    prefix, ext, mode, tree = CASES[case]
    spec = None
    if mode is ForwardMode.VERIFY:
        mask = _random_tree(torch.Generator().manual_seed(3), 2, ext[0]).to(device) if tree else None
        spec = SpecInfo(num_draft_tokens=ext[0] - 1, tree_mask=mask)
    batch, (kc, vc), (q, k, v) = _setup(device, prefix, ext, mode, dtype=dtype, spec_info=spec)
    caches = (kc.float().to(FP8), vc.float().to(FP8))
    k[0, 0, :2] = torch.tensor([1000.0, -1e4])  # past e4m3's range: stored as +-448
    tri = _backend(TritonAttentionBackend, device)
    tri.split_mixed_min_kv_bytes = 0  # mixed: the extend and decode kernels both run
    out, kc_tri, vc_tri = _run(tri, batch, caches, (q, k, v))
    want, kc_ref, vc_ref = _run(_backend(ReferenceAttentionBackend, device), batch, caches,
                                (q, k, v))
    assert kc_tri.dtype == FP8 and out.dtype == dtype
    assert torch.equal(kc_tri.view(torch.uint8), kc_ref.view(torch.uint8))
    assert torch.equal(vc_tri.view(torch.uint8), vc_ref.view(torch.uint8))
    slot = int(batch.out_slots[0])
    assert kc_ref[slot, 0, :2].float().tolist() == [448.0, -448.0]
    assert rel_err(out, want) < TOL[dtype]
    if case == "mixed":
        assert type(tri._plan).__name__ == "_MixedPlan"
    if tree:
        assert tri._plan.tree


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_fp8_store_rounds_like_torch(device, dtype):
    """The store kernel's e4m3 values are torch's (nearest even, saturated, signed zeros)
    over e4m3's whole range, subnormals included."""
    from anyware.kernels.triton.store import store_kv

    n = 4096
    x = torch.randn(n, 2, 8) * torch.logspace(-4, 3, n)[:, None, None]
    x[0, 0, :4] = torch.tensor([1000.0, -1e4, 447.0, -0.0])
    x = x.to(dtype).to(device)
    kc = torch.zeros(n, 2, 8, dtype=FP8, device=device)
    vc = torch.zeros_like(kc)
    store_kv(kc, vc, x, -x, torch.arange(n, device=device))
    for got, src in ((kc, x), (vc, -x)):
        want = src.float().clamp(-448.0, 448.0).to(FP8)
        assert torch.equal(got.view(torch.uint8), want.view(torch.uint8))
    assert kc[0, 0, :2].float().tolist() == [448.0, -448.0]
