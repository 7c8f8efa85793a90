"""Fused-MoE kernel timing on a GPU, shared by ``tune_moe.py`` and ``gpu/w5_moe.py``.

Each measurement replays a CUDA graph of the layer (as the engine does in decode), so host
launch cost is excluded and a host sync inside the layer would fail the capture. Rooflines are
measured in the same process: device-to-device copy bandwidth and a large bf16 matmul.
"""

from __future__ import annotations

import torch
from anyware.kernels.reference import moe_route
from anyware.kernels.triton.moe import expert_gemms, fused_moe
from anyware.kernels.triton.moe_small import fused_moe_small
from anyware.plugin import MoESpec, MoEWeightLayout

# Qwen3-30B-A3B's MoE layer
QWEN3_30B_A3B = dict(num_experts=128, top_k=8, hidden=2048, inter=768)


def make_layer(num_experts: int, top_k: int, hidden: int, inter: int, tokens: int,
               dtype=torch.bfloat16, seed: int = 0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    spec = MoESpec(num_experts, top_k, hidden, inter, dtype)
    layout = MoEWeightLayout()
    w13 = torch.randn(layout.w13_shape(spec), device="cuda", dtype=dtype, generator=g) * hidden**-0.5
    w2 = torch.randn(layout.w2_shape(spec), device="cuda", dtype=dtype, generator=g) * inter**-0.5
    x = torch.randn(tokens, hidden, device="cuda", dtype=dtype, generator=g)
    logits = torch.randn(tokens, num_experts, device="cuda", generator=g)
    return x, logits, w13, w2


def graph_time_ms(fn, iters: int = 50, warmup: int = 3) -> float:
    """Mean time of ``iters`` replays of a CUDA graph of ``fn`` (captured after
    ``warmup`` eager calls, which also compile the Triton kernels)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    graph.replay()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


def active_bytes(x, ids, w13, w2) -> int:
    """Bytes the layer must move at least: the weights of the distinct experts hit, plus
    activations in and out."""
    hit = int(torch.unique(ids).numel())
    per_expert = (w13[0].numel() + w2[0].numel()) * w13.element_size()
    return hit * per_expert + 2 * x.numel() * x.element_size()


def layer_flops(tokens: int, top_k: int, hidden: int, inter: int) -> float:
    return 2.0 * tokens * top_k * 3 * hidden * inter


def copy_bandwidth_gbs(nbytes: int = 2 << 30) -> float:
    a = torch.empty(nbytes // 2, dtype=torch.bfloat16, device="cuda")
    b = torch.empty_like(a)
    ms = graph_time_ms(lambda: b.copy_(a), iters=20)
    return 2 * nbytes / ms / 1e6


def matmul_tflops(n: int = 8192) -> float:
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    ms = graph_time_ms(lambda: a @ b, iters=20)
    return 2 * n**3 / ms / 1e9


def time_fused(x, logits, weights_copies, top_k: int, config: dict) -> dict:
    """ms per layer call of the whole layer (routing + alignment + 2 GEMMs + combine) and of
    the expert GEMMs alone (alignment included), as graph replays that walk over several
    copies of the expert weights (``weights_copies``: ``[(w13, w2), ...]``, together larger
    than L2) so that repeats are not served from cache."""
    n = len(weights_copies)
    weights, ids = moe_route(logits, top_k, True)

    def whole():
        for w13, w2 in weights_copies:
            fused_moe(x, *moe_route(logits, top_k, True), w13, w2, config)

    flat = ids.reshape(-1)
    pw = weights.reshape(-1).contiguous()

    def gemms():
        for w13, w2 in weights_copies:
            expert_gemms(x, flat, top_k, w13, w2, w13.shape[0], config, pair_weights=pw,
                         out_dtype=torch.float32)

    return {"layer_ms": round(graph_time_ms(whole) / n, 4),
            "gemms_ms": round(graph_time_ms(gemms) / n, 4), "ids": ids}


def time_small(x, logits, weights_copies, top_k: int, config: dict | None) -> float:
    """ms per layer call of the decode-sized path (routing included: two launches), over the
    same weight copies as :func:`time_fused`."""
    def whole():
        for w13, w2 in weights_copies:
            fused_moe_small(x, logits, w13, w2, top_k, True, config=config)
    return round(graph_time_ms(whole) / len(weights_copies), 4)


def weight_copies(w13: torch.Tensor, w2: torch.Tensor, min_bytes: int = 2 << 30) -> list:
    """The layer's weights plus independent copies until together over ``min_bytes``."""
    per = (w13.numel() + w2.numel()) * w13.element_size()
    copies = [(w13, w2)]
    while len(copies) * per < min_bytes:
        copies.append((w13.clone(), w2.clone()))
    return copies
