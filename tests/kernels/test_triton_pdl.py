"""Programmatic dependent launch (``anyware.kernels.triton.pdl``): every kernel that takes
``pdl`` gives the same bits with it on as off, eagerly and replayed from a CUDA graph in a
chain with cuBLAS GEMMs between the kernels (the shape of a decode step). Needs a GPU of
compute capability 9.0+; elsewhere only the helpers are checked (the launch option is never
passed with PDL off, so the interpreter and other backends never see it)."""

from __future__ import annotations

import pytest
import torch
from anyware.kernels.triton import activation, norm, rotary, store
from anyware.kernels.triton.decode_attention import decode_attention, decode_workspace
from anyware.kernels.triton.moe_small import fused_moe_small
from anyware.kernels.triton.pdl import launch_options, supports_pdl, triton_has_pdl

from tests.kernels._helpers import new_token_slots, random_paged_kv

HAS_PDL = torch.cuda.is_available() and supports_pdl(
    torch.cuda.get_device_capability(), False)[0]
gpu_pdl = pytest.mark.skipif(not HAS_PDL, reason="needs a GPU of compute capability 9.0+")


def test_launch_options_and_support_rules():
    assert launch_options(False) == {} and launch_options(True) == {"launch_pdl": True}
    usable, why = supports_pdl((9, 0), True)
    assert not usable and "interpreter" in why
    assert "this GPU is 8.9" in supports_pdl((8, 9), False)[1]
    assert not supports_pdl(None, False)[0]
    assert supports_pdl((10, 0), False)[0] is triton_has_pdl()


def _step(pdl: bool, t: dict) -> list[torch.Tensor]:
    """One decode-like layer: norm -> GEMM -> norm+rotary -> KV store -> attention ->
    GEMM -> add+norm -> GEMM -> SiLU-mul -> MoE (two kernels); every Triton launch with
    ``pdl``, the GEMMs (cuBLAS) between them as torch launches them."""
    x = norm.rms_norm(t["x"], t["w"], 1e-6, pdl=pdl)
    qkv = x @ t["w_qkv"]
    hq, hk, d = 8, 2, 64
    q, k, v = qkv.split([hq * d, hk * d, hk * d], dim=-1)
    q, k = rotary.norm_rotary(q.view(-1, hq, d), k.view(-1, hk, d), t["pos"], t["cos_sin"],
                              True, t["qn"], t["kn"], 1e-6, pdl=pdl)
    store.store_kv(t["k_cache"], t["v_cache"], k, v.view(-1, hk, d), t["slots"], pdl=pdl)
    outs = []
    for fused in (True, False):
        ws = decode_workspace(q.shape[0], hq, 4, d, q.device)
        outs.append(decode_attention(q, t["k_cache"], t["v_cache"], t["pt"], t["seq"], 16,
                                     d**-0.5, 4, workspace=ws, fused_reduce=fused, pdl=pdl))
    o = outs[0].reshape(q.shape[0], -1) @ t["w_o"]
    h, r = norm.fused_add_rms_norm(o, t["x"], t["w"], 1e-6, pdl=pdl)
    act = activation.silu_and_mul(h @ t["w_up"], pdl=pdl)
    moe = fused_moe_small(h, t["logits"], t["w13"], t["w2"], 2, True,
                          config={"BLOCK_N1": 16, "BLOCK_K1": 64, "WARPS1": 4, "BLOCK_N2": 16,
                                  "BLOCK_K2": 64, "WARPS2": 4, "FLAT2": 1}, pdl=pdl)
    return [x, q, k, t["k_cache"].clone(), *outs, h, r, act, moe]


def _inputs(device, dtype=torch.bfloat16) -> dict:
    hidden, hq, hk, d, tokens = 256, 8, 2, 64, 3
    lens = [40, 70, 130]
    k_cache, v_cache, pt = random_paged_kv(lens, 16, hk, d, dtype, device)
    seq = torch.tensor(lens, dtype=torch.int32, device=device)
    slots = new_token_slots(pt, [n - 1 for n in lens], [1] * tokens, 16)
    inv = 1.0 / (10000 ** (torch.arange(0, d, 2, device=device).float() / d))
    ang = torch.arange(256, device=device).float()[:, None] * inv[None]
    g = torch.Generator(device=device).manual_seed(7)

    def rnd(*shape, s=1.0):
        return (torch.randn(*shape, generator=g, device=device) * s).to(dtype)
    return dict(
        x=rnd(tokens, hidden), w=rnd(hidden), w_qkv=rnd(hidden, (hq + 2 * hk) * d, s=0.06),
        qn=rnd(d), kn=rnd(d), pos=(seq - 1).long(), cos_sin=torch.cat([ang.cos(), ang.sin()], -1),
        k_cache=k_cache, v_cache=v_cache, pt=pt, seq=seq, slots=slots,
        w_o=rnd(hq * d, hidden, s=0.04), w_up=rnd(hidden, 2 * 128, s=0.06),
        logits=rnd(tokens, 8), w13=rnd(8, 2 * 64, hidden, s=0.06), w2=rnd(8, hidden, 64, s=0.1),
    )


@gpu_pdl
def test_pdl_same_bits_eager_and_in_a_graph():
    base = _inputs("cuda")
    fresh = {key: v.clone() for key, v in base.items()}
    want = _step(False, fresh)
    eager = _step(True, {key: v.clone() for key, v in base.items()})
    for a, b in zip(eager, want, strict=True):
        assert torch.equal(a, b)
    # captured with PDL (programmatic edges in the graph), replayed twice on fresh inputs
    static = {key: v.clone() for key, v in base.items()}
    _step(True, {key: v.clone() for key, v in base.items()})  # compiled before capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        got = _step(True, static)
    for _ in range(2):
        for key, v in base.items():
            static[key].copy_(v)
        graph.replay()
        torch.cuda.synchronize()
        for a, b in zip(got, want, strict=True):
            assert torch.equal(a, b)
