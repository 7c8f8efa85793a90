"""W8A8 fp8 linear layer for a few rows (decode at small batch): one kernel that quantises the
activations per token and multiplies them by the e4m3 weights on the CUDA cores.

Why a kernel of its own: at one to four rows the layer is a matrix-vector product bound by
the weight bytes, and ``torch._scaled_mm`` picked a 128 x 128-tile tensor-core GEMM on the H200
that read the weights at about half the bandwidth, after a separate quantisation launch per
layer (run 3 of session 8: 3.9 ms of linear layers per bs-1 step of the 8B shape against a
floor of 1.87 ms, and 0.48 ms of quantisation launches).

Same contract and the same numbers as ``KernelOps.fp8_linear``'s reference: each program
recomputes its rows' scales (``quant.fp8_scale`` of the row's absolute maximum, read from
L2) and quantises each chunk with ``quant.fp8_quantize`` (the reference's e4m3 bytes); the
products of two e4m3 values are exact in fp32 and are summed in fp32, then scaled by the
token's and the output channel's scales, biased, and rounded once to the output dtype. Only
the summation order differs from the reference's matmul.

Each program owns ``BLOCK_N`` output channels for every row, so the weights are read once.
No host synchronisation (graph-capture safe).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from anyware.kernels.triton.quant import fp8_quantize, fp8_scale

MAX_ROWS = 4  # above this, the tensor-core GEMM (CUDA-core FMAs would outlast the weight reads)
BLOCK_K = 512


@triton.jit
def _fp8_gemv_kernel(
    x_ptr, w_ptr, ws_ptr, b_ptr, out_ptr,
    stride_x, stride_w, stride_o, N, K,
    ROWS: tl.constexpr, ROWS_PAD: tl.constexpr, HAS_BIAS: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid = tl.program_id(0)
    offs_n = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    rows = tl.arange(0, ROWS_PAD)
    mask_r = rows < ROWS
    cols = tl.arange(0, BLOCK_K)
    x_rows = x_ptr + rows[:, None].to(tl.int64) * stride_x
    # the rows' scales: the absolute maximum of each whole row
    amax = tl.zeros([ROWS_PAD, BLOCK_K], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        mk = mask_r[:, None] & (k0 + cols[None, :] < K)
        xk = tl.load(x_rows + k0 + cols[None, :], mask=mk, other=0.0).to(tl.float32)
        amax = tl.maximum(amax, tl.abs(xk))
    scales = fp8_scale(tl.max(amax, axis=1))  # [ROWS_PAD]
    acc = tl.zeros([ROWS_PAD, BLOCK_N], dtype=tl.float32)
    w_rows = w_ptr + offs_n[:, None].to(tl.int64) * stride_w
    for k0 in range(0, K, BLOCK_K):
        mk = k0 + cols < K
        w = tl.load(w_rows + k0 + cols[None, :], mask=mask_n[:, None] & mk[None, :],
                    other=0.0).to(tl.float32)
        xk = tl.load(x_rows + k0 + cols[None, :], mask=mask_r[:, None] & mk[None, :],
                     other=0.0).to(tl.float32)
        xq = fp8_quantize(xk, scales[:, None])  # e4m3 values, in fp32
        for m in tl.static_range(ROWS):
            xm = tl.sum(tl.where(rows[:, None] == m, xq, 0.0), axis=0)  # row m's chunk
            part = tl.sum(w * xm[None, :], axis=1)  # [BLOCK_N]
            acc = tl.where(rows[:, None] == m, acc + part[None, :], acc)
    ws = tl.load(ws_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)
    y = acc * scales[:, None] * ws[None, :]
    if HAS_BIAS:
        y += tl.load(b_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
    out = out_ptr + rows[:, None].to(tl.int64) * stride_o + offs_n[None, :]
    tl.store(out, y.to(out_ptr.dtype.element_ty), mask=mask_r[:, None] & mask_n[None, :])


def fp8_gemv(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor,
             bias: torch.Tensor | None = None) -> torch.Tensor:
    """``KernelOps.fp8_linear`` for ``1 <= x.shape[0] <= MAX_ROWS``: ``x`` ``[T, K]`` (any
    float dtype), ``weight`` e4m3 ``[N, K]`` (row-major), ``weight_scale`` ``[N]``, ``bias``
    ``[N]`` or None -> ``[T, N]`` in ``x.dtype``."""
    t, k = x.shape
    n = weight.shape[0]
    if not 1 <= t <= MAX_ROWS:
        raise ValueError(f"fp8_gemv takes 1..{MAX_ROWS} rows, got {t}")
    if x.stride(-1) != 1:
        x = x.contiguous()
    if weight.stride(-1) != 1:
        weight = weight.contiguous()
    out = torch.empty((t, n), dtype=x.dtype, device=x.device)
    block_n = 32 if n >= 8192 else 16  # enough programs to fill the GPU: N / 16 >= 256 for N >= 4096
    _fp8_gemv_kernel[(triton.cdiv(n, block_n),)](
        x, weight, weight_scale, bias if bias is not None else weight_scale, out,
        x.stride(0), weight.stride(0), out.stride(0), n, k,
        ROWS=t, ROWS_PAD=max(triton.next_power_of_2(t), 2), HAS_BIAS=bias is not None,
        BLOCK_N=block_n, BLOCK_K=min(BLOCK_K, max(triton.next_power_of_2(k), 16)),
        num_warps=4,
    )
    return out
