"""`TritonOps`: `KernelOps` backed by the portable Triton kernels.

Norm, rotary, SiLU-and-mul, the KV store and the fp8 linear layer's activation quantisation
(its product is ``torch._scaled_mm``) run as Triton kernels; sampling stays the torch
reference (device-side tensor ops only, no host sync). MoE layers are a separate interface:
``anyware.kernels.triton.moe_backend.TritonMoEBackend``.
"""

from __future__ import annotations

from anyware.kernels.reference import ReferenceOps
from anyware.kernels.triton import activation, norm, quant, rotary, store


class TritonOps(ReferenceOps):
    provider = "triton"

    def rms_norm(self, x, weight, eps):
        self.calls["rms_norm"] += 1
        return norm.rms_norm(x, weight, eps)

    def fused_add_rms_norm(self, x, residual, weight, eps):
        self.calls["fused_add_rms_norm"] += 1
        return norm.fused_add_rms_norm(x, residual, weight, eps)

    def rotary(self, q, k, positions, cos_sin, is_neox=True):
        self.calls["rotary"] += 1
        return rotary.apply_rotary(q, k, positions, cos_sin, is_neox)

    def norm_rotary(self, q, k, positions, cos_sin, is_neox=True, q_weight=None, k_weight=None,
                    eps=1e-6):
        # one launch for q and k: per-head RMSNorm kept in fp32, then rotary
        self.calls["norm_rotary"] += 1
        return rotary.norm_rotary(q, k, positions, cos_sin, is_neox, q_weight, k_weight, eps)

    def silu_and_mul(self, x):
        self.calls["silu_and_mul"] += 1
        return activation.silu_and_mul(x)

    def store_kv(self, k_cache, v_cache, k, v, slots):
        self.calls["store_kv"] += 1
        store.store_kv(k_cache, v_cache, k, v, slots)

    def fp8_linear(self, x, weight, weight_scale, bias=None):
        self.calls["fp8_linear"] += 1
        return quant.fp8_linear(x, weight, weight_scale, bias)
