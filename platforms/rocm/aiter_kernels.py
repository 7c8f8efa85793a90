"""The aiter kernels the ROCm plugin calls, imported lazily and in one place.

Written against amd-aiter 0.1.7.post2.dev18 (its Triton modules under ``aiter/ops/triton/``):

* ``aiter.ops.triton.pa_decode.paged_attention_decode(output, query, key_cache, value_cache,
  seq_lens, block_tables, attn_scale, max_seq_len, compute_type, k_scale, v_scale,
  num_seq_partitions=0, alibi_slopes=None)`` — query/output ``[B, Hq, D]``, caches
  ``[num_blocks, Hkv, block_size, D]`` read through their strides, ``compute_type`` a
  ``triton.language`` dtype, ``k_scale``/``v_scale`` one-element tensors (read with
  ``.item()``: keep them on the host).
* ``aiter.ops.triton.mha.flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k,
  max_seqlen_q, max_seqlen_k, dropout_p=0.0, softmax_scale=None, causal=False, ...)`` — causal
  mask aligned to the bottom right (a query row sees every key up to its own position when
  the keys are the cached prefix followed by the new tokens).
* ``aiter.ops.triton.rmsnorm.rms_norm(input, weight, epsilon)`` and
  ``rmsnorm2d_fwd_with_add(out, input, residual_in, residual_out, weight, epsilon)``.

Importing ``aiter`` runs ROCm checks (``hipconfig``); the platform only calls this module when
its probe found aiter importable.
"""

from __future__ import annotations

from types import ModuleType


def pa_decode() -> ModuleType:
    from aiter.ops.triton import pa_decode as mod

    return mod


def mha() -> ModuleType:
    from aiter.ops.triton import mha as mod

    return mod


def rmsnorm() -> ModuleType:
    from aiter.ops.triton import rmsnorm as mod

    return mod


def version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("amd-aiter")
    except importlib.metadata.PackageNotFoundError:
        return "?"
