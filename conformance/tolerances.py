"""The one tolerance table of the suite, keyed by (op, dtype, reduction length).

Every numeric comparison goes through :func:`tolerance`. A result passes when, elementwise,
``|actual - expected| <= atol + rtol * |expected|`` against a reference computed in fp32 (or
fp64) from the same (upcast) inputs. The reduction length is the length of the longest sum
behind one output element (hidden size for a norm, keys per query for attention, ranks for a
collective); longer reductions accumulate more rounding in low precision, so the table has a
row per length bucket. A plugin loosens an entry only through a declared
:class:`anyware.plugin.Waiver`, which every report lists.
"""

from __future__ import annotations

from dataclasses import dataclass

INF = float("inf")


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float
    source: str = "table"  # "table" or "waiver: <reason>"


# (op, dtype, max reduction length, atol, rtol); first match wins; "*" matches any op.
TABLE: tuple[tuple[str, str, float, float, float], ...] = (
    # exact data movement: stores, copies, collectives that only move data
    ("store_kv", "*", INF, 0.0, 0.0),
    ("kv_cache", "*", INF, 0.0, 0.0),
    ("all_gather", "*", INF, 0.0, 0.0),
    ("all_to_all", "*", INF, 0.0, 0.0),
    ("broadcast", "*", INF, 0.0, 0.0),
    ("add", "float32", INF, 1e-6, 1e-6),
    ("add", "*", INF, 1e-2, 8e-3),
    # routing weights are a softmax over experts, computed in fp32 by contract
    ("moe_route", "*", INF, 1e-5, 1e-5),
    # sums over ranks
    ("all_reduce", "float32", 64, 1e-5, 1e-5),
    ("reduce_scatter", "float32", 64, 1e-5, 1e-5),
    ("all_reduce", "*", 64, 2e-2, 1.6e-2),
    ("reduce_scatter", "*", 64, 2e-2, 1.6e-2),
    # attention: softmax over keys, then a weighted sum of values
    ("attention", "float32", 1024, 2e-5, 1e-4),
    ("attention", "float32", INF, 5e-5, 2e-4),
    ("attention", "bfloat16", 1024, 1.6e-2, 1.6e-2),
    ("attention", "bfloat16", INF, 2.5e-2, 2e-2),
    ("attention", "float16", 1024, 3e-3, 3e-3),
    ("attention", "float16", INF, 5e-3, 5e-3),
    # attention over an fp8 e4m3 KV cache (any model dtype; looked up as dtype
    # "float8_e4m3fn"): the reference attends over the same stored fp8 values, so a backend
    # that reads the cache agrees to its compute dtype; the bound is one e4m3 rounding of K
    # and V (3-bit mantissa: relative error <= 2^-4), the room a backend needs that attends
    # over the new tokens' unrounded K/V (and what a faithful read can never come near)
    ("attention", "float8_e4m3fn", INF, 6.25e-2, 6.25e-2),
    # MoE experts: two matmuls (reduction = hidden + intermediate)
    ("moe", "float32", INF, 1e-4, 1e-4),
    ("moe", "bfloat16", INF, 3e-2, 3e-2),
    ("moe", "float16", INF, 5e-3, 5e-3),
    # fp8 W8A8 MoE experts (reduction = hidden + intermediate) against the reference fp8
    # backend on the same e4m3 weights and scales (outputs ~ N(0, 1)): the row quantiser is
    # pinned (x / s rounded to nearest even) and e4m3 products are exact in fp32, so a faithful
    # backend differs by the fp32 summation order and by the SiLU-mul intermediate, which both
    # sides round to the model dtype from slightly different fp32 values (one ulp apart, at
    # times): the intermediate's re-quantisation may then put an element one e4m3 step apart,
    # one step of the row's amax / 14 times one down weight (~I^-1/2) - up to ~0.05 (measured
    # 0.043 for the Triton kernel in bf16; 0 in fp32 on the CPU) -> atol; rtol: the output's
    # rounding into the dtype. A down GEMM that applies the mean w2 scale to every row is off
    # by max 0.2-0.8 per case (the faulty plugin's fp8_moe_w2_scale_mean), an unscaled product
    # by orders of magnitude.
    ("moe_fp8", "float32", INF, 4e-2, 1e-5),
    ("moe_fp8", "bfloat16", INF, 6e-2, 8e-3),
    ("moe_fp8", "float16", INF, 5e-2, 1.5e-3),
    # W8A8 fp8 linear layer (reduction = K). The test divides each output row by its token's
    # power-of-two magnitude (exact), so these bounds read in units of a typical output (the
    # weights are N(0, 1/K): outputs ~ N(0, 1)) whatever the token's scale. The reference
    # multiplies the same e4m3 operands (the quantisation is pinned: x / s rounded to nearest
    # even) and accumulates in fp32, so what may differ is the fp32 summation order (~1e-6)
    # and the one rounding of the output into the dtype (rtol: bf16 2^-8, fp16 2^-11, with
    # room) - plus, rarely, one element quantised one e4m3 step apart (x / s within an fp32
    # ulp of a rounding midpoint: a reciprocal or fused scale), which moves an output by up to
    # one quantisation step of x (amax / 14 at the top of e4m3's range) times one weight
    # (~1 / sqrt(K)): atol. An activation quantiser that truncates instead of rounding is off
    # by ~0.2, a per-tensor activation scale by ~1.5, a per-tensor weight scale by ~0.5.
    ("fp8_linear", "float32", 1024, 4e-2, 1e-5),
    ("fp8_linear", "float32", INF, 1e-2, 1e-5),
    ("fp8_linear", "bfloat16", 1024, 4e-2, 8e-3),
    ("fp8_linear", "bfloat16", INF, 1e-2, 8e-3),
    ("fp8_linear", "float16", 1024, 4e-2, 1.5e-3),
    ("fp8_linear", "float16", INF, 1e-2, 1.5e-3),
    # fp8 rows made by a norm or SiLU-and-mul for its projection (KernelOps.fp8_activations),
    # compared as e4m3 codes against the fp32 reference divided by the row's own scale: the
    # op's output rounded to the model dtype (u: 2^-8 bf16, 2^-11 fp16), then to the nearest
    # e4m3 value (half a step: 2^-4 relative for normals, 2^-10 absolute among subnormals);
    # rtol = 2^-4 + 2u with room. Rounding by truncation is off by up to a whole step (2^-3).
    ("fp8_rows", "float32", INF, 1e-3, 6.3e-2),
    ("fp8_rows", "bfloat16", INF, 1e-3, 7.1e-2),
    ("fp8_rows", "float16", INF, 1e-3, 6.4e-2),
    # whole tiny models (graphs tier): logits after a few layers
    ("model_logits", "float32", INF, 1e-4, 1e-4),
    ("model_logits", "bfloat16", INF, 1e-1, 5e-2),
    ("model_logits", "float16", INF, 2e-2, 1e-2),
    ("logprob", "float32", INF, 1e-3, 1e-3),
    ("logprob", "*", INF, 5e-2, 5e-2),
    # per-head q/k RMSNorm then rotary (KernelOps.norm_rotary) against fp32 norm + rotary: the
    # default composition rounds the normed values to the dtype before rotating, an absolute
    # error u * (|xn cos| + |xp sin|) that does not shrink where the rotation cancels; the
    # normed values reach ~8 (RMS ~ |weight|), so atol = 8u (u: unit roundoff, 2^-8 bf16,
    # 2^-11 fp16); fp32 falls through to the elementwise rows (8u there is ~5e-7)
    ("norm_rotary", "bfloat16", INF, 3.125e-2, 8e-3),
    ("norm_rotary", "float16", INF, 3.9e-3, 1.5e-3),
    # elementwise kernels and norms (rms_norm reduces over the hidden size)
    ("*", "float32", 8192, 1e-5, 1e-5),
    ("*", "float32", INF, 3e-5, 3e-5),
    ("*", "bfloat16", 8192, 1e-2, 8e-3),
    ("*", "bfloat16", INF, 1.6e-2, 1.6e-2),
    ("*", "float16", 8192, 1.5e-3, 1.5e-3),
    ("*", "float16", INF, 3e-3, 3e-3),
    ("*", "float64", INF, 1e-10, 1e-10),
)


def tolerance(op: str, dtype: str, reduction: int = 1) -> Tolerance:
    """The table's tolerance for ``op`` in ``dtype`` reducing over ``reduction`` elements."""
    for t_op, t_dtype, max_len, atol, rtol in TABLE:
        if t_op in (op, "*") and t_dtype in (dtype, "*") and reduction <= max_len:
            return Tolerance(atol, rtol)
    raise KeyError(f"no tolerance for op={op!r} dtype={dtype!r} reduction={reduction}")
