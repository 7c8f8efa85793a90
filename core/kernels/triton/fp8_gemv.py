"""W8A8 fp8 linear layer for a few rows (decode at small batch), one launch per layer: the
activation row's quantisation and its product with the e4m3 weights, on the CUDA cores.

Opt-in (``TritonOps(fp8_gemv_max_rows=N)``; the CUDA platform's ``cuda_fp8_gemv_max_rows``
option), **not measured on a GPU yet**: ``torch._scaled_mm`` stays the default. Why it exists:
at one row the layer is bound by its weight bytes, and on the H200 cuBLASLt ran a 128 x 128
tile fp8 GEMM that read the 8B shape's weights at 45% of the bandwidth, after a separate
quantisation launch per layer (docs/performance.md, session 8). A first few-rows kernel that
reduced across threads every 512 columns measured 2x slower still and was removed; this one
keeps a ``[BLOCK_N, BLOCK_K]`` fp32 accumulator in registers and reduces once per program.
``benchmarks/kernels/fp8_small_m.py`` times it against ``_scaled_mm``.

Grid ``(rows, cdiv(N, BLOCK_N))``, rows fastest, so the programs of one block of output
channels run together and the second row's weight reads come from L2. Each program computes
its row's scale (``quant.fp8_scale`` of the row's absolute maximum, read from L2) and
quantises each chunk with ``quant.fp8_quantize``: the reference's e4m3 values. Products of
two e4m3 values are exact in fp32 and are summed in fp32, then scaled by the token's and the
channel's scales, biased, and rounded once: the reference's numbers up to summation order.
No host synchronisation (graph-capture safe).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from anyware.kernels.triton.quant import fp8_quantize, fp8_scale

BLOCK_N, BLOCK_K, NUM_WARPS = 16, 256, 4


@triton.jit
def _fp8_gemv_kernel(
    x_ptr, w_ptr, ws_ptr, b_ptr, out_ptr,
    stride_x, stride_w, stride_o, N, K,
    HAS_BIAS: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    cols = tl.arange(0, BLOCK_K)
    x_row = x_ptr + row * stride_x
    amax = tl.zeros([BLOCK_K], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        xk = tl.load(x_row + k0 + cols, mask=k0 + cols < K, other=0.0).to(tl.float32)
        amax = tl.maximum(amax, tl.abs(xk))
    scale = fp8_scale(tl.max(amax, axis=0))
    acc = tl.zeros([BLOCK_N, BLOCK_K], dtype=tl.float32)
    w_rows = w_ptr + offs_n[:, None].to(tl.int64) * stride_w
    for k0 in range(0, K, BLOCK_K):
        mk = k0 + cols < K
        xq = fp8_quantize(tl.load(x_row + k0 + cols, mask=mk, other=0.0).to(tl.float32), scale)
        w = tl.load(w_rows + k0 + cols[None, :], mask=mask_n[:, None] & mk[None, :], other=0.0)
        acc += w.to(tl.float32) * xq[None, :]
    y = tl.sum(acc, axis=1) * scale * tl.load(ws_ptr + offs_n, mask=mask_n, other=0.0)
    if HAS_BIAS:
        y += tl.load(b_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)
    tl.store(out_ptr + row * stride_o + offs_n, y.to(out_ptr.dtype.element_ty), mask=mask_n)


def fp8_gemv(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor,
             bias: torch.Tensor | None = None, *, block_n: int = BLOCK_N,
             block_k: int = BLOCK_K, num_warps: int = NUM_WARPS) -> torch.Tensor:
    """``KernelOps.fp8_linear`` in one launch: ``x`` ``[T, K]`` (any float dtype, last dim
    contiguous after a copy if needed), ``weight`` e4m3 ``[N, K]`` row-major,
    ``weight_scale`` fp32 ``[N]``, ``bias`` ``[N]`` or None -> ``[T, N]`` in ``x.dtype``.
    Meant for a few rows (it reads the weights once per row); the block sizes are for
    benchmarks."""
    t, k = x.shape
    n = weight.shape[0]
    out = torch.empty((t, n), dtype=x.dtype, device=x.device)
    if t == 0:
        return out
    if x.stride(-1) != 1:
        x = x.contiguous()
    if weight.stride(-1) != 1:
        weight = weight.contiguous()
    _fp8_gemv_kernel[(t, triton.cdiv(n, block_n))](
        x, weight, weight_scale, bias if bias is not None else weight_scale, out,
        x.stride(0), weight.stride(0), out.stride(0), n, k,
        HAS_BIAS=bias is not None, BLOCK_N=block_n,
        BLOCK_K=min(block_k, max(16, triton.next_power_of_2(k))), num_warps=num_warps,
    )
    return out
