"""What each class of kernel in a step should cost: bytes and FLOPs from the model's shape, and
the floor they set at the measured bandwidth and bf16 peak (issue 21, "where the time goes").

``classify(name)`` sorts a CUDA kernel (torch.profiler's name) into a class; ``floors(cfg, ...)``
gives, per class, the bytes that must move and the FLOPs that must run for one forward of
``tokens`` new tokens over ``kv_tokens`` cached ones; ``table(...)`` puts measured next to
floor. Small per-token kernels (norms, rotary, KV store, activation, sampling) move a few MB:
their floor is ~0 and what they cost is launches, which the table shows as such.
"""

from __future__ import annotations

# substring (lower case) -> class; the first match wins
CLASSES = (
    ("sdpa", "attention"),  # cuDNN's flash attention (torch SDPA), before its "sm90"
    ("e4m3", "linear"),  # cuBLASLt fp8 GEMMs (torch._scaled_mm)
    ("quant", "quantize"),
    # the fused-MoE kernels (kernels/triton/moe.py, moe_small.py), before "gemm"
    ("moe", "moe"), ("gate_up", "moe"), ("down_combine", "moe"), ("down_flat", "moe"),
    ("nvjet", "linear"), ("gemv", "linear"), ("gemm", "linear"), ("xmma", "linear"),
    ("cutlass", "linear"), ("sm90", "linear"), ("splitk", "linear"),
    ("decode", "attention"), ("extend", "attention"), ("attn", "attention"),
    ("flash", "attention"), ("fmha", "attention"), ("stage", "attention"),
    ("expert", "moe"),
    ("rms", "norm"), ("norm", "norm"),
    ("rotary", "rotary"), ("rope", "rotary"),
    ("store_kv", "kv_store"),
    ("silu", "activation"),
    ("embedding", "embedding"), ("index", "embedding"),
    ("softmax", "sampling"), ("argmax", "sampling"), ("sort", "sampling"), ("topk", "sampling"),
    ("reduce", "sampling"), ("copy", "copy"), ("memcpy", "copy"), ("fill", "copy"),
    ("elementwise", "elementwise"), ("vectorized", "elementwise"),
)


def classify(name: str) -> str:
    low = name.lower()
    return next((c for key, c in CLASSES if key in low), "other")


def floors(cfg, tokens: int, kv_tokens: int, weight_bytes: float = 2.0, kv_bytes: float = 2.0,
           act_bytes: int = 2) -> dict[str, dict[str, float]]:
    """Bytes and FLOPs per class for one forward of a decoder (``ModelConfig``; MoE layers:
    the experts random routing touches, plus the router, under "moe"):
    ``tokens`` new tokens attending over ``kv_tokens`` cached ones in total (over all requests).
    ``weight_bytes``: bytes per linear-layer weight (2 for bf16, ~1 for fp8 W8A8); the LM head
    and embeddings stay at ``act_bytes``."""
    h, layers = cfg.hidden_size, cfg.num_layers
    d, nh, nkv = cfg.head_dim, cfg.num_heads, cfg.num_kv_heads
    inter = cfg.intermediate_size
    attn_params = h * (nh + 2 * nkv) * d + nh * d * h
    sparse = [cfg.is_moe and cfg.is_sparse_layer(n) for n in range(layers)]
    dense_layers = layers - sum(sparse)
    lin_params = layers * attn_params + dense_layers * 3 * h * inter
    head = cfg.vocab_size * h
    lin_bytes = lin_params * weight_bytes + head * act_bytes
    lin_bytes += tokens * layers * (h * 3 + inter * 3 + (nh + 2 * nkv) * d) * act_bytes
    moe = {"bytes": 0.0, "flops": 0.0}
    if any(sparse):  # experts a step touches: E * (1 - (1 - k/E)^tokens) on random routing
        e, k, mi = cfg.num_experts, cfg.num_experts_per_tok, cfg.moe_intermediate_size
        touched = e * (1 - (1 - k / e) ** tokens)
        per_expert = 3 * h * mi
        moe["bytes"] = sum(sparse) * (touched * per_expert * act_bytes + h * e * act_bytes)
        moe["flops"] = sum(sparse) * 2 * tokens * (k * per_expert + h * e)
    attn_bytes = layers * kv_tokens * 2 * nkv * d * kv_bytes + tokens * layers * 2 * nh * d * act_bytes
    attn_flops = layers * 4 * nh * d * max(kv_tokens, tokens)
    small = tokens * layers * h * act_bytes
    return {
        "linear": {"bytes": lin_bytes, "flops": 2 * tokens * (lin_params + head)},
        "moe": moe,
        "attention": {"bytes": attn_bytes, "flops": attn_flops},
        "norm": {"bytes": 6 * small, "flops": 0},
        "rotary": {"bytes": 2 * tokens * layers * (nh + nkv) * d * act_bytes, "flops": 0},
        "kv_store": {"bytes": 2 * tokens * layers * 2 * nkv * d * act_bytes, "flops": 0},
        "activation": {"bytes": 3 * tokens * layers * inter * act_bytes, "flops": 0},
        "embedding": {"bytes": tokens * h * act_bytes, "flops": 0},
        "sampling": {"bytes": tokens * cfg.vocab_size * 4, "flops": 0},
    }


def table(measured: dict[str, list[float]], floor: dict[str, dict[str, float]], steps: int,
          bandwidth: float = 4.3e12, peak: float = 790e12) -> dict[str, dict]:
    """Per class: measured ms and launches per step next to the floor (the larger of bytes at
    ``bandwidth`` and FLOPs at ``peak``), and the share of the floor reached."""
    out = {}
    for cls in sorted(set(measured) | set(floor)):
        ms, launches = measured.get(cls, [0.0, 0])
        f = floor.get(cls, {"bytes": 0.0, "flops": 0.0})
        floor_ms = max(f["bytes"] / bandwidth, f["flops"] / peak) * 1e3
        row = {"ms": round(ms / steps, 4), "launches": round(launches / steps, 1),
               "floor_ms": round(floor_ms, 4), "gb": round(f["bytes"] / 1e9, 4),
               "tflop": round(f["flops"] / 1e12, 4)}
        if ms and floor_ms:
            row["of_floor"] = round(floor_ms / (ms / steps), 3)
        out[cls] = row
    return out
