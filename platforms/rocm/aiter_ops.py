"""`AiterOps`: the portable Triton ops with aiter's Triton RMSNorm kernels.

RMSNorm and the fused residual-add RMSNorm run on aiter's kernels; rotary, SiLU-and-mul and
the KV store stay on the portable Triton kernels (aiter's rotary takes separate cos/sin caches
and its activation and KV-cache kernels are HIP C++ modules that JIT-compile with hipcc at
first use), sampling and MoE routing on the torch reference.
"""

from __future__ import annotations

import torch
from anyware.kernels.triton.ops import TritonOps
from anyware_rocm import aiter_kernels


class AiterOps(TritonOps):
    provider = "aiter"

    def __init__(self) -> None:
        super().__init__()
        self._rms = aiter_kernels.rmsnorm()

    def rms_norm(self, x, weight, eps):
        self.calls["rms_norm"] += 1
        return self._rms.rms_norm(x.contiguous(), weight, eps)

    def fused_add_rms_norm(self, x, residual, weight, eps):
        self.calls["fused_add_rms_norm"] += 1
        x = x.contiguous()
        out = torch.empty_like(x)
        res_out = torch.empty_like(x)
        self._rms.rmsnorm2d_fwd_with_add(out, x, residual.to(x.dtype).contiguous(), res_out,
                                         weight, eps)
        return out, res_out
