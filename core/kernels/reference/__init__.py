"""Torch reference ops: plain, readable, computed in fp32. The conformance suite compares every
platform against these; the CPU platform runs them."""

from anyware.kernels.reference.activation import silu_and_mul
from anyware.kernels.reference.attention import paged_attention, slots_for
from anyware.kernels.reference.attention_backend import ReferenceAttentionBackend
from anyware.kernels.reference.moe import (
    ReferenceMoEBackend,
    grouped_expert_mlp_fp8,
    moe_dense,
    moe_route,
    quantize_experts_fp8,
)
from anyware.kernels.reference.norm import fused_add_rms_norm, rms_norm
from anyware.kernels.reference.ops import ReferenceOps
from anyware.kernels.reference.quant import fp8_linear, quantize_fp8_rows
from anyware.kernels.reference.rotary import apply_rotary, rope_cos_sin
from anyware.kernels.reference.sampling import sample, sampling_noise
from anyware.kernels.reference.store import store_kv

__all__ = [
    "ReferenceAttentionBackend",
    "ReferenceMoEBackend",
    "ReferenceOps",
    "apply_rotary",
    "fp8_linear",
    "fused_add_rms_norm",
    "grouped_expert_mlp_fp8",
    "moe_dense",
    "moe_route",
    "quantize_experts_fp8",
    "paged_attention",
    "quantize_fp8_rows",
    "rms_norm",
    "rope_cos_sin",
    "sample",
    "sampling_noise",
    "silu_and_mul",
    "slots_for",
    "store_kv",
]
