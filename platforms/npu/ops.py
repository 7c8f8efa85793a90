"""`NpuOps`: `KernelOps` on torch_npu's fused operators.

Every call matches the schema in ``schemas/torch_npu_ops.json`` (copied from Ascend's
op-plugin; tests check each call against it):

* ``npu_rms_norm(Tensor self, Tensor gamma, float epsilon=1e-06) -> (Tensor, Tensor)``
* ``npu_add_rms_norm(Tensor x1, Tensor x2, Tensor gamma, float epsilon=1e-06)
  -> (Tensor, Tensor, Tensor)`` (y, rstd, x1 + x2)
* ``npu_rotary_mul(Tensor self, Tensor r1, Tensor r2, str rotary_mode='half', Tensor? rotate=None)``
  ``x * r1 + rotate(x) * r2`` on BSND tensors; 'half' pairs ``i`` with ``i + D/2`` (neox),
  'interleave' pairs ``2i`` with ``2i+1`` (GPT-J)
* ``npu_swiglu(Tensor self, int dim=-1)``: ``silu(a) * b`` for ``a, b = self.chunk(2, dim)``
* ``_npu_reshape_and_cache(Tensor key, Tensor value, Tensor(a!) key_cache,
  Tensor(b!) value_cache, Tensor slot_indices) -> ()`` (ATB) for the KV store, with
  ``npu_scatter_nd_update_(Tensor(a!) self, Tensor indices, Tensor updates)`` where torch_npu
  was built without ATB.

Sampling and MoE routing are the torch reference running on the NPU.
"""

from __future__ import annotations

import torch
from anyware.kernels.reference import ReferenceOps


class NpuOps(ReferenceOps):
    provider = "torch_npu"

    def __init__(self, torch_npu) -> None:
        super().__init__()
        self._npu = torch_npu

    def rms_norm(self, x, weight, eps):
        self.calls["rms_norm"] += 1
        return self._npu.npu_rms_norm(x, weight, epsilon=eps)[0]

    def fused_add_rms_norm(self, x, residual, weight, eps):
        self.calls["fused_add_rms_norm"] += 1
        y, _rstd, total = self._npu.npu_add_rms_norm(x, residual.to(x.dtype), weight, epsilon=eps)
        return y, total

    def rotary(self, q, k, positions, cos_sin, is_neox=True):
        self.calls["rotary"] += 1
        rot = cos_sin.shape[-1]
        half = rot // 2
        cs = cos_sin[positions]  # [T, rot] fp32
        cos, sin = cs[:, :half], cs[:, half:]
        if is_neox:
            cos, sin, mode = torch.cat([cos, cos], -1), torch.cat([sin, sin], -1), "half"
        else:
            cos, sin = cos.repeat_interleave(2, -1), sin.repeat_interleave(2, -1)
            mode = "interleave"
        # BSND: batch 1, T tokens, heads, rotary dims; cos/sin broadcast over heads
        r1 = cos[None, :, None, :].to(q.dtype)
        r2 = sin[None, :, None, :].to(q.dtype)

        def apply(x):
            part = x[..., :rot].unsqueeze(0).contiguous()
            out = self._npu.npu_rotary_mul(part, r1, r2, rotary_mode=mode)[0]
            return out if rot == x.shape[-1] else torch.cat([out, x[..., rot:]], -1)

        return apply(q), apply(k)

    def silu_and_mul(self, x):
        self.calls["silu_and_mul"] += 1
        return self._npu.npu_swiglu(x, dim=-1)

    def store_kv(self, k_cache, v_cache, k, v, slots):
        self.calls["store_kv"] += 1
        k, v = k.to(k_cache.dtype), v.to(v_cache.dtype)
        if hasattr(self._npu, "_npu_reshape_and_cache"):
            # the op wants [num_blocks, block_size, H, D]; the flat slot cache is block size 1
            self._npu._npu_reshape_and_cache(k, v, k_cache.unsqueeze(1), v_cache.unsqueeze(1),
                                             slots.to(torch.int32))
            return
        idx = slots.to(torch.int64).unsqueeze(-1)
        self._npu.npu_scatter_nd_update_(k_cache, idx, k)
        self._npu.npu_scatter_nd_update_(v_cache, idx, v)
