"""Ragged paged attention in JAX: one call for prefill, prefix extend, decode and verify.

The call and the KV layout are those of ``jax.experimental.pallas.ops.tpu
.ragged_paged_attention``: queries ``[T, Hq, D]``; ``kv_pages`` ``[pages, page_size, 2*Hk, D]``
with K and V interleaved along the head axis (K head ``h`` at ``2h``, V head ``h`` at
``2h+1``); ``kv_lens`` i32 ``[B]`` (KV length after this step); ``page_indices`` i32 ``[B, P]``;
``cu_q_lens`` i32 ``[B+1]`` (query rows of sequence ``i`` are ``cu_q_lens[i]:cu_q_lens[i+1]``);
``num_seqs`` i32 ``[1]``. Rows past ``cu_q_lens[num_seqs]`` are padding (output 0).

On a TPU :func:`ragged_paged_attention` calls the Pallas kernel. Elsewhere it calls
:func:`ragged_paged_attention_xla`, a jittable pure-jnp version of the same call
(``ref_ragged_paged_attention`` in jax loops over sequences in Python, so it cannot be jitted;
it is this function's test oracle). The Pallas kernel needs a TPU and is not run in CI.
"""

from __future__ import annotations

from typing import Any

from anyware_tpu.jaxenv import backend, jax_module

MASK_VALUE = -0.7 * float.fromhex("0x1.fffffep127")  # the Pallas kernel's default


def ragged_paged_attention_xla(queries, kv_pages, kv_lens, page_indices, cu_q_lens, num_seqs,
                               *, sm_scale: float = 1.0, sliding_window: int | None = None,
                               soft_cap: float | None = None) -> Any:
    """The Pallas call's semantics as XLA ops (fp32 scores, softmax and PV), jittable.

    Memory: it gathers each query row's KV (``T * P * page_size * Hk * D``): a reference for
    the CPU and small batches, not a TPU kernel."""
    jnp = jax_module().numpy
    t_pad, hq, d = queries.shape
    _, ps, hk2, _ = kv_pages.shape
    hk = hk2 // 2
    g = hq // hk
    b, p = page_indices.shape
    rows = jnp.arange(t_pad, dtype=jnp.int32)
    req = jnp.clip(jnp.searchsorted(cu_q_lens[1:], rows, side="right"), 0, b - 1)
    start = cu_q_lens[req]
    q_len = cu_q_lens[req + 1] - start
    pos = kv_lens[req] - q_len + (rows - start)  # position of each query row
    valid = rows < cu_q_lens[num_seqs[0]]
    kv = kv_pages[page_indices].reshape(b, p * ps, hk, 2, d)  # [B, S, Hk, 2, D]
    kv = kv[req].astype(jnp.float32)  # [T, S, Hk, 2, D]
    q = queries.reshape(t_pad, hk, g, d).astype(jnp.float32)
    scores = jnp.einsum("tkgd,tskd->tkgs", q, kv[..., 0, :]) * sm_scale
    if soft_cap is not None:
        scores = soft_cap * jnp.tanh(scores / soft_cap)
    s = jnp.arange(p * ps, dtype=jnp.int32)[None, :]
    allowed = (s <= pos[:, None]) & (s < kv_lens[req][:, None]) & valid[:, None]
    if sliding_window is not None:
        allowed &= s > pos[:, None] - sliding_window
    scores = jnp.where(allowed[:, None, None, :], scores, MASK_VALUE)
    probs = jax_module().nn.softmax(scores, axis=-1)
    out = jnp.einsum("tkgs,tskd->tkgd", probs, kv[..., 1, :]).reshape(t_pad, hq, d)
    return jnp.where(valid[:, None, None], out, 0.0).astype(queries.dtype)


def ragged_paged_attention(queries, kv_pages, kv_lens, page_indices, cu_q_lens, num_seqs, *,
                           sm_scale: float = 1.0, sliding_window: int | None = None,
                           soft_cap: float | None = None) -> Any:
    """The Pallas kernel on a TPU, :func:`ragged_paged_attention_xla` elsewhere (same call)."""
    if backend() == "tpu":  # pragma: no cover - needs a TPU
        from jax.experimental.pallas.ops.tpu.ragged_paged_attention import (
            ragged_paged_attention as pallas_rpa,
        )

        return pallas_rpa(queries, kv_pages, kv_lens, page_indices, cu_q_lens, num_seqs,
                          sm_scale=sm_scale, sliding_window=sliding_window, soft_cap=soft_cap)
    return ragged_paged_attention_xla(queries, kv_pages, kv_lens, page_indices, cu_q_lens,
                                      num_seqs, sm_scale=sm_scale, sliding_window=sliding_window,
                                      soft_cap=soft_cap)


def write_kv(kv_pages, k, v, slots) -> Any:
    """The KV write as a functional scatter: ``kv_pages`` with new token ``t``'s K and V at
    ``slots[t]`` (``page * page_size + offset``), interleaved. Returns the new array."""
    jnp = jax_module().numpy
    n, ps, hk2, d = kv_pages.shape
    new = jnp.stack([k, v], axis=2).reshape(k.shape[0], hk2, d).astype(kv_pages.dtype)
    flat = kv_pages.reshape(n * ps, hk2, d).at[slots].set(new)
    return flat.reshape(n, ps, hk2, d)
