"""KV-cache store reference."""

import torch

FP8_E4M3_MAX = 448.0  # torch.finfo(torch.float8_e4m3fn).max


def to_kv_dtype(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``x`` as stored in a ``dtype`` cache: fp8 e4m3 is saturated to +-448 first (scale 1.0:
    the value itself is stored, never NaN for an out-of-range one); other dtypes are cast."""
    if dtype == torch.float8_e4m3fn:
        return x.clamp(-FP8_E4M3_MAX, FP8_E4M3_MAX).to(dtype)
    return x.to(dtype)


def store_kv(k_cache, v_cache, k: torch.Tensor, v: torch.Tensor, slots: torch.Tensor) -> None:
    k_cache[slots] = to_kv_dtype(k, k_cache.dtype)
    v_cache[slots] = to_kv_dtype(v, v_cache.dtype)
