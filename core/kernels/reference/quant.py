"""FP8 (e4m3) quantisation and the W8A8 linear layer: the reference for
``KernelOps.fp8_linear`` and the load-time weight quantisation.

One rule for weights and activations: a row is scaled by its own absolute maximum so that it
spans e4m3's finite range (±448), then rounded to the nearest e4m3 value (ties to even).
"""

from __future__ import annotations

import torch
from anyware.plugin import Fp8Rows

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = 448.0  # e4m3's largest finite value
MIN_AMAX = 1e-12  # an all-zero row gets a tiny scale instead of a division by zero
FP8_ALIGN = 16  # N and K of an fp8 linear layer are multiples of this (GEMM alignment)


def quantize_fp8_rows(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``t`` ``[R, C]`` -> ``(q, scale)``: ``q`` e4m3 ``[R, C]``, ``scale`` fp32 ``[R]`` with
    ``q[r].float() * scale[r] ≈ t[r]``. ``scale = max(amax(|t[r]|), 1e-12) / 448`` in fp32;
    ``q = e4m3(clamp(t / scale, ±448))``."""
    f = t.float()
    scale = f.abs().amax(dim=-1).clamp_min(MIN_AMAX) / FP8_MAX
    q = (f / scale[:, None]).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
    return q, scale


def quantize_fp8_activations(x: torch.Tensor) -> Fp8Rows:
    """The contract of ``KernelOps.quantize_fp8``: :func:`quantize_fp8_rows` of ``x``, kept with
    ``x``'s dtype (the output dtype of the linear layer the rows feed)."""
    q, scale = quantize_fp8_rows(x)
    return Fp8Rows(q, scale, x.dtype)


def fp8_matmul(xq: torch.Tensor, xs: torch.Tensor, weight: torch.Tensor,
               weight_scale: torch.Tensor, bias: torch.Tensor | None,
               dtype: torch.dtype) -> torch.Tensor:
    """``(xq @ weight.T) * xs[:, None] * weight_scale[None, :] (+ bias)`` on e4m3 operands,
    accumulated in fp32, returned in ``dtype``."""
    y = (xq.float() @ weight.float().T) * xs[:, None] * weight_scale.float()[None, :]
    if bias is not None:
        y = y + bias.float()
    return y.to(dtype)


def fp8_linear(x: torch.Tensor | Fp8Rows, weight: torch.Tensor, weight_scale: torch.Tensor,
               bias: torch.Tensor | None = None) -> torch.Tensor:
    """The contract of ``KernelOps.fp8_linear``: ``x`` quantised per token (or already an
    :class:`~anyware.plugin.Fp8Rows`), the product accumulated in fp32 and scaled by both
    scales, plus ``bias``; in ``x.dtype``."""
    if isinstance(x, Fp8Rows):
        return fp8_matmul(x.data, x.scale, weight, weight_scale, bias, x.dtype)
    xq, xs = quantize_fp8_rows(x)
    return fp8_matmul(xq, xs, weight, weight_scale, bias, x.dtype)
