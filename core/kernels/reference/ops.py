"""`ReferenceOps`: the reference implementation of `KernelOps`."""

from __future__ import annotations

from anyware.kernels.reference import activation, norm, quant, rotary, sampling, store
from anyware.plugin import KernelOps


class ReferenceOps(KernelOps):
    provider = "torch-reference"
    # fp8 producers compose the ops below (the KernelOps defaults) and quantize_fp8
    fp8_activations = True

    def rms_norm(self, x, weight, eps):
        self.calls["rms_norm"] += 1
        return norm.rms_norm(x, weight, eps)

    def fused_add_rms_norm(self, x, residual, weight, eps):
        self.calls["fused_add_rms_norm"] += 1
        return norm.fused_add_rms_norm(x, residual, weight, eps)

    def rotary(self, q, k, positions, cos_sin, is_neox=True):
        self.calls["rotary"] += 1
        return rotary.apply_rotary(q, k, positions, cos_sin, is_neox)

    def silu_and_mul(self, x):
        self.calls["silu_and_mul"] += 1
        return activation.silu_and_mul(x)

    def store_kv(self, k_cache, v_cache, k, v, slots):
        self.calls["store_kv"] += 1
        store.store_kv(k_cache, v_cache, k, v, slots)

    def sample(self, logits, params):
        self.calls["sample"] += 1
        return sampling.sample(logits, params)

    def fp8_linear(self, x, weight, weight_scale, bias=None):
        self.calls["fp8_linear"] += 1
        return quant.fp8_linear(x, weight, weight_scale, bias)

    def quantize_fp8(self, x):
        self.calls["quantize_fp8"] += 1
        return quant.quantize_fp8_activations(x)
