"""Portable Triton kernels (CUDA, ROCm, XPU): the only place in the core that imports triton.

Every kernel here has the same semantics as its torch reference in
``anyware.kernels.reference`` (see the docstrings of ``anyware.plugin.ops``); the tests in
``tests/kernels`` compare them on fresh random inputs, on the CPU under ``TRITON_INTERPRET=1``
and on a GPU at real shapes.
"""

from anyware.kernels.triton.activation import silu_and_mul
from anyware.kernels.triton.decode_attention import decode_attention
from anyware.kernels.triton.extend_attention import extend_attention
from anyware.kernels.triton.norm import fused_add_rms_norm, rms_norm
from anyware.kernels.triton.rotary import apply_rotary
from anyware.kernels.triton.store import store_kv

__all__ = [
    "apply_rotary",
    "decode_attention",
    "extend_attention",
    "fused_add_rms_norm",
    "rms_norm",
    "silu_and_mul",
    "store_kv",
]
