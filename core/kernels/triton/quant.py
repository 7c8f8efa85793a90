"""W8A8 FP8 linear layer: per-token e4m3 quantisation of the activations (a Triton kernel)
followed by ``torch._scaled_mm`` with row-wise scales (``KernelOps.fp8_linear``).

The quantisation matches ``anyware.kernels.reference.quant.quantize_fp8_rows`` bit for bit:
the scale is ``max(amax(|x[t]|), 1e-12) / 448`` in fp32 and each element is ``x / scale``
(IEEE division, ``div_rn``: Triton's plain fp32 ``/`` is an approximate division on NVIDIA
GPUs) rounded to the nearest e4m3 value by ``_saturate_e4m3`` (the store kernel's helper;
the interpreter's own fp32 -> fp8 cast does not round to nearest).

No host synchronisation anywhere (graph-capture safe): shapes only are read on the host.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from anyware.kernels.triton.store import _saturate_e4m3
from anyware.plugin import Fp8Rows

FP8_DTYPE = torch.float8_e4m3fn
MAX_BLOCK = 4096  # one row is read in chunks of at most this many elements


@triton.jit
def fp8_scale(amax):
    """A row's e4m3 scale from its absolute maximum: ``max(amax, 1e-12) / 448`` in fp32, IEEE
    division (the reference's ``quantize_fp8_rows``)."""
    return tl.math.div_rn(tl.maximum(amax, 1e-12), 448.0)


@triton.jit
def fp8_quantize(x, scale):
    """``x / scale`` rounded to the nearest e4m3 value, in fp32 (exactly representable: the
    conversion to float8_e4m3fn that may follow is exact)."""
    return _saturate_e4m3(tl.math.div_rn(x, scale))


@triton.jit
def _quantize_rows_kernel(
    x_ptr, q_ptr, s_ptr,
    stride_x, stride_q, K,
    BLOCK: tl.constexpr, ONE_PASS: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * stride_x
    q_row = q_ptr + row * stride_q
    cols = tl.arange(0, BLOCK)
    if ONE_PASS:  # the row fits one block: read it once
        mask = cols < K
        x = tl.load(x_row + cols, mask=mask, other=0.0).to(tl.float32)
        scale = fp8_scale(tl.max(tl.abs(x), axis=0))
        q = fp8_quantize(x, scale)
        tl.store(q_row + cols, q.to(q_ptr.dtype.element_ty), mask=mask)
    else:
        amax = tl.zeros([BLOCK], dtype=tl.float32)
        for k0 in range(0, K, BLOCK):
            mask = k0 + cols < K
            x = tl.load(x_row + k0 + cols, mask=mask, other=0.0).to(tl.float32)
            amax = tl.maximum(amax, tl.abs(x))
        scale = fp8_scale(tl.max(amax, axis=0))
        for k0 in range(0, K, BLOCK):
            mask = k0 + cols < K
            x = tl.load(x_row + k0 + cols, mask=mask, other=0.0).to(tl.float32)
            q = fp8_quantize(x, scale)
            tl.store(q_row + k0 + cols, q.to(q_ptr.dtype.element_ty), mask=mask)
    tl.store(s_ptr + row, scale)


def quantize_fp8_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` ``[R, C]`` (any float dtype, last dim contiguous) -> ``(q, scale)``: ``q`` e4m3
    ``[R, C]``, ``scale`` fp32 ``[R]``; the reference's values exactly."""
    r, c = x.shape
    if x.stride(-1) != 1:
        x = x.contiguous()
    q = torch.empty((r, c), dtype=FP8_DTYPE, device=x.device)
    scale = torch.empty((r,), dtype=torch.float32, device=x.device)
    if r == 0:
        return q, scale
    block = min(triton.next_power_of_2(max(c, 1)), MAX_BLOCK)
    _quantize_rows_kernel[(r,)](
        x, q, scale, x.stride(0), q.stride(0), c,
        BLOCK=block, ONE_PASS=c <= block, num_warps=4 if block <= 1024 else 8,
    )
    return q, scale


def fp8_linear(x: torch.Tensor | Fp8Rows, weight: torch.Tensor, weight_scale: torch.Tensor,
               bias: torch.Tensor | None = None) -> torch.Tensor:
    """``KernelOps.fp8_linear``: ``x`` ``[T, K]`` quantised per token by the kernel above (or
    already quantised: an :class:`~anyware.plugin.Fp8Rows` from a fused norm / SiLU), then
    ``(x_q @ weight.T) * s[:, None] * weight_scale[None, :] (+ bias)`` by ``torch._scaled_mm``
    (fp32 accumulation, no fast accumulation), in ``x.dtype``. ``weight.t()`` of the row-major
    ``[N, K]`` weight is the column-major ``[K, N]`` operand ``_scaled_mm`` wants.

    bf16 / fp16: row-wise scales (``scale_a`` ``[T, 1]``, ``scale_b`` ``[1, N]``) and the bias
    in the one ``_scaled_mm`` call (its epilogue applies them in fp32, then rounds once).

    fp32: CUDA's ``_scaled_mm`` refuses a bias with an fp32 output ("Bias is not supported
    when out_dtype is set to Float32"), and row-wise scales with an fp32 output run only
    through cuBLAS on compute capability 9.0 (the CUTLASS row-wise kernel that sm89 and sm100
    use writes bf16 / fp16 only). So an fp32 model takes the product with unit tensor-wise
    scales into fp32 (cuBLASLt supports it from sm89 on) and applies both scales and the
    bias after, in fp32 — the reference's own order of operations, at one extra pass over
    the fp32 output.
    """
    t, n = x.shape[0], weight.shape[0]
    if t == 0:
        return torch.empty((0, n), dtype=x.dtype, device=weight.device)
    if isinstance(x, Fp8Rows):
        xq, xs = x.data, x.scale
    else:
        xq, xs = quantize_fp8_rows(x)
    ws = weight_scale.float()
    if x.dtype != torch.float32:
        return torch._scaled_mm(xq, weight.t(), scale_a=xs[:, None], scale_b=ws[None, :],
                                bias=bias, out_dtype=x.dtype)
    one = xs.new_ones(())
    y = torch._scaled_mm(xq, weight.t(), scale_a=one, scale_b=one, out_dtype=torch.float32)
    y = y * xs[:, None] * ws[None, :]
    return y if bias is None else y + bias.float()
