"""A linear layer for a few rows (decode at small batch): ``y = x @ W^T (+ b)`` for ``x [M, K]``
with ``M <= 16``, ``W [N, K]`` (bf16 / fp16 / fp32), one launch, no split-K.

Why: at one row a linear layer is bound by reading its weight once, and cuBLAS picks split-K
GEMVs plus a reduce launch whose ramp-up and tail cost most of a small layer's time (the
Qwen3-30B-A3B shape's 21 MB QKV and 17 MB output projections ran at about 48% of the H200's
bandwidth; session 10's W5 profile). Here each program owns ``BLOCK_N`` output channels and
walks all of ``K`` in ``BLOCK_K`` tiles that feed ``tl.dot`` (the rows padded to 16), so
Triton's software pipeline keeps ``num_stages`` weight tiles in flight per program through
asynchronous copies; fp32 accumulation, one rounding at the end. The same bits for the same
launch configuration on every call (no atomics). Grid ``cdiv(N, BLOCK_N)``.

Not yet wired into the model's layers: ``benchmarks/kernels/gemv_small_m.py`` measures it
against ``F.linear`` at the W1 and W5 shapes first (docs/performance.md).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

MAX_ROWS = 16


@triton.jit
def _gemv_kernel(x_ptr, w_ptr, b_ptr, out_ptr, M, N, K, stride_x, stride_w, stride_o,
                 HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                 BLOCK_K: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    offs_m = tl.arange(0, BLOCK_M)
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    m_ok = offs_m < M
    n_ok = offs_n < N
    cols = tl.arange(0, BLOCK_K)
    x_rows = x_ptr + offs_m[:, None] * stride_x
    w_rows = w_ptr + offs_n[None, :].to(tl.int64) * stride_w  # [1, BLOCK_N]: W^T tiles
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        k = k0 + cols
        k_ok = k < K
        x = tl.load(x_rows + k[None, :], mask=m_ok[:, None] & k_ok[None, :], other=0.0)
        w = tl.load(w_rows + k[:, None], mask=k_ok[:, None] & n_ok[None, :], other=0.0)
        if UPCAST:  # the interpreter's low-precision dot is not reliable: do it in fp32
            x = x.to(tl.float32)
            w = w.to(tl.float32)
        acc = tl.dot(x, w, acc, input_precision=PRECISION)
    if HAS_BIAS:
        acc += tl.load(b_ptr + offs_n, mask=n_ok, other=0.0).to(tl.float32)[None, :]
    tl.store(out_ptr + offs_m[:, None] * stride_o + offs_n[None, :],
             acc.to(out_ptr.dtype.element_ty), mask=m_ok[:, None] & n_ok[None, :])


def default_blocks(n: int, k: int, device: torch.device) -> dict:
    """Launch configuration: about four programs per SM where ``N`` allows (16 channels at
    least, the smallest ``tl.dot`` tile), 128-column tiles, four stages."""
    sms = torch.cuda.get_device_properties(device).multi_processor_count \
        if device.type == "cuda" else 8
    block_n = 16
    while block_n < 64 and triton.cdiv(n, block_n * 2) >= 4 * sms:
        block_n *= 2
    interp = device.type == "cpu"
    return {"block_n": block_n, "block_k": 32 if interp else 128, "num_warps": 4,
            "num_stages": 1 if interp else 4}


def small_m_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                   block_n: int | None = None, block_k: int | None = None,
                   num_warps: int | None = None, num_stages: int | None = None) -> torch.Tensor:
    """``x [M, K] @ weight[N, K]^T (+ bias [N])`` -> ``[M, N]`` in ``x.dtype``, ``M <= 16``.
    ``None`` launch settings take :func:`default_blocks`. Raises ``ValueError`` for more
    rows or mismatched shapes."""
    m, k = x.shape
    n, kw = weight.shape
    if m > MAX_ROWS or kw != k:
        raise ValueError(f"small_m_linear: x {tuple(x.shape)} and weight {tuple(weight.shape)} "
                         f"(at most {MAX_ROWS} rows, matching K)")
    out = torch.empty((m, n), dtype=x.dtype, device=x.device)
    if m == 0:
        return out
    x = x if x.stride(-1) == 1 else x.contiguous()
    cfg = default_blocks(n, k, x.device)
    for key, val in (("block_n", block_n), ("block_k", block_k), ("num_warps", num_warps),
                     ("num_stages", num_stages)):
        if val is not None:
            cfg[key] = val
    _gemv_kernel[(triton.cdiv(n, cfg["block_n"]),)](
        x, weight, bias if bias is not None else weight, out, m, n, k, x.stride(0),
        weight.stride(0), out.stride(0), HAS_BIAS=bias is not None, BLOCK_M=16,
        BLOCK_N=cfg["block_n"], BLOCK_K=cfg["block_k"],
        PRECISION="ieee" if x.dtype == torch.float32 or x.device.type == "cpu" else "tf32",
        UPCAST=x.device.type == "cpu",
        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
    return out
