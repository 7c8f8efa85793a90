"""`TritonOps`: `KernelOps` backed by the portable Triton kernels.

Norm, rotary, SiLU-and-mul, the KV store and the fp8 linear layer's activation quantisation
(its product is ``torch._scaled_mm``) run as Triton kernels; sampling stays the torch
reference (device-side tensor ops only, no host sync). MoE layers are a separate interface:
``anyware.kernels.triton.moe_backend.TritonMoEBackend``.
"""

from __future__ import annotations

from anyware.kernels.reference import ReferenceOps
from anyware.kernels.triton import activation, fp8_gemv, norm, quant, rotary, store
from anyware.plugin import Fp8Rows


class TritonOps(ReferenceOps):
    """``fp8_gemv_max_rows``: ``fp8_linear`` of 1 to that many rows runs the one-launch
    few-rows kernel (``fp8_gemv``) instead of quantisation + ``torch._scaled_mm``; 0 (the
    default) never: the kernel is not yet measured on a GPU.

    ``fp8_activations``: the norms and SiLU-and-mul before an fp8 projection quantise their
    output in their own launch (``rms_norm_fp8`` ...), which ``fp8_linear`` then multiplies
    as it is. Off where the few-rows kernel is on: that kernel quantises its own input.

    ``pdl``: the norm, rotary and SiLU-and-mul kernels launch with programmatic dependent
    launch (:mod:`anyware.kernels.triton.pdl`; Hopper and later, set by the platform)."""

    provider = "triton"

    def __init__(self, fp8_gemv_max_rows: int = 0, pdl: bool = False) -> None:
        super().__init__()
        self.fp8_gemv_max_rows = fp8_gemv_max_rows
        self.fp8_activations = fp8_gemv_max_rows == 0
        self.pdl = pdl

    def rms_norm(self, x, weight, eps):
        self.calls["rms_norm"] += 1
        return norm.rms_norm(x, weight, eps, pdl=self.pdl)

    def fused_add_rms_norm(self, x, residual, weight, eps):
        self.calls["fused_add_rms_norm"] += 1
        return norm.fused_add_rms_norm(x, residual, weight, eps, pdl=self.pdl)

    def rotary(self, q, k, positions, cos_sin, is_neox=True):
        self.calls["rotary"] += 1
        return rotary.apply_rotary(q, k, positions, cos_sin, is_neox, pdl=self.pdl)

    def norm_rotary(self, q, k, positions, cos_sin, is_neox=True, q_weight=None, k_weight=None,
                    eps=1e-6):
        # one launch for q and k: per-head RMSNorm kept in fp32, then rotary
        self.calls["norm_rotary"] += 1
        return rotary.norm_rotary(q, k, positions, cos_sin, is_neox, q_weight, k_weight, eps,
                                  pdl=self.pdl)

    def silu_and_mul(self, x):
        self.calls["silu_and_mul"] += 1
        return activation.silu_and_mul(x, pdl=self.pdl)

    def rms_norm_fp8(self, x, weight, eps):
        self.calls["rms_norm_fp8"] += 1
        return norm.rms_norm_fp8(x, weight, eps, pdl=self.pdl)

    def fused_add_rms_norm_fp8(self, x, residual, weight, eps):
        self.calls["fused_add_rms_norm_fp8"] += 1
        return norm.fused_add_rms_norm_fp8(x, residual, weight, eps, pdl=self.pdl)

    def silu_and_mul_fp8(self, x):
        self.calls["silu_and_mul_fp8"] += 1
        return activation.silu_and_mul_fp8(x, pdl=self.pdl)

    def quantize_fp8(self, x):
        self.calls["quantize_fp8"] += 1
        return Fp8Rows(*quant.quantize_fp8_rows(x), x.dtype)

    def store_kv(self, k_cache, v_cache, k, v, slots):
        self.calls["store_kv"] += 1
        store.store_kv(k_cache, v_cache, k, v, slots, pdl=self.pdl)

    def fp8_linear(self, x, weight, weight_scale, bias=None):
        self.calls["fp8_linear"] += 1
        if not isinstance(x, Fp8Rows) and 1 <= x.shape[0] <= self.fp8_gemv_max_rows:
            return fp8_gemv.fp8_gemv(x, weight, weight_scale, bias)
        return quant.fp8_linear(x, weight, weight_scale, bias)
