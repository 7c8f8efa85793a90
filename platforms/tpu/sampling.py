"""Sampling in JAX, traced into the compiled step: ``KernelOps.sample``'s semantics, no host
sync, the same counter-based noise as ``anyware.kernels.reference.sampling_noise``.

JAX runs without x64, so the reference's 32-bit-safe int64 hash is computed in ``uint32``
(whose multiply wraps mod 2^32, which is what the reference emulates): the noise is the same
bits, so a seeded request draws the same token as on every other platform (up to float
rounding of the probabilities at a top-p / min-p boundary). Seeds travel as two ``uint32``
halves. An all-greedy batch takes the argmax branch of a ``lax.cond`` (no sort at run time).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from anyware.plugin import SamplingTensors
from anyware_tpu.jaxenv import jax_module

FIELDS = ("temperatures", "top_ks", "top_ps", "min_ps", "seed_lo", "seed_hi", "steps", "greedy")


def _hash32(x):
    jnp = jax_module().numpy
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def noise(seed_lo, seed_hi, steps, vocab_size: int):
    """Uniform noise in (0, 1), fp32 ``[L, V]``: the reference's bits (uint32 inputs)."""
    jnp = jax_module().numpy
    h = _hash32(seed_lo)
    h = _hash32(h ^ seed_hi)
    h = _hash32(h ^ steps)
    idx = jnp.arange(vocab_size, dtype=jnp.uint32) * jnp.uint32(0x9E3779B1)
    x = _hash32(h[:, None] ^ idx[None, :])
    return ((x >> 8).astype(jnp.float32) + 0.5) / float(1 << 24)


def _filter(probs, top_ks, top_ps, min_ps):
    jnp = jax_module().numpy
    rows, v = probs.shape
    order = jnp.argsort(probs, axis=-1, descending=True, stable=True)
    sorted_p = jnp.take_along_axis(probs, order, axis=-1)
    keep = jnp.arange(v, dtype=jnp.int32)[None, :] < top_ks[:, None]
    sorted_p = sorted_p * keep
    before = jnp.cumsum(sorted_p, axis=-1) - sorted_p
    keep &= before < top_ps[:, None] * sorted_p.sum(-1, keepdims=True)
    keep &= sorted_p >= min_ps[:, None] * sorted_p[:, :1]
    keep = keep.at[:, 0].set(True)
    mask = jnp.zeros_like(keep).at[jnp.arange(rows)[:, None], order].set(keep)
    return probs * mask


def sample(logits, s: dict[str, Any]) -> tuple[Any, Any]:
    """fp32 ``logits`` ``[L, V]`` and the :data:`FIELDS` arrays ``[L]`` -> ``(tokens i32,
    logprob of each token fp32)``; traced inside the step (or jitted on its own)."""
    jax = jax_module()
    jnp = jax.numpy
    logits = logits.astype(jnp.float32)
    greedy_tok = jnp.argmax(logits, axis=-1).astype(jnp.int32)

    def drawn(_):
        temps = jnp.where(s["greedy"], 1.0, s["temperatures"])
        probs = jax.nn.softmax(logits / temps[:, None], axis=-1)
        probs = _filter(probs, s["top_ks"], s["top_ps"], s["min_ps"])
        u = noise(s["seed_lo"], s["seed_hi"], s["steps"], logits.shape[-1])
        race = probs / -jnp.log(u)
        tok = jnp.argmax(race, axis=-1).astype(jnp.int32)
        return jnp.where(s["greedy"], greedy_tok, tok)

    tokens = jax.lax.cond(jnp.all(s["greedy"]), lambda _: greedy_tok, drawn, None)
    lse = jax.nn.logsumexp(logits, axis=-1)
    chosen = jnp.take_along_axis(logits, tokens[:, None], axis=-1)[:, 0] - lse
    return tokens, chosen


def host_params(params: SamplingTensors | None, rows: int) -> dict[str, np.ndarray]:
    """``params`` (``n <= rows`` rows, host tensors) as program inputs padded to ``rows``
    (padding rows greedy); ``None``: every row greedy."""

    def col(t: torch.Tensor | None, dtype, fill) -> np.ndarray:
        out = np.full((rows,), fill, dtype=dtype)
        if t is not None:
            out[: t.shape[0]] = t.detach().cpu().numpy().astype(dtype)
        return out

    p = params
    seeds = None if p is None else p.seeds.detach().cpu().to(torch.int64).numpy()
    lo = None if seeds is None else torch.from_numpy((seeds & 0xFFFFFFFF).astype(np.uint32))
    hi = None if seeds is None else torch.from_numpy(((seeds >> 32) & 0xFFFFFFFF).astype(np.uint32))
    return {
        "temperatures": col(None if p is None else p.temperatures, np.float32, 1.0),
        "top_ks": col(None if p is None else p.top_ks, np.int32, 1 << 30),
        "top_ps": col(None if p is None else p.top_ps, np.float32, 1.0),
        "min_ps": col(None if p is None else p.min_ps, np.float32, 0.0),
        "seed_lo": col(lo, np.uint32, 0), "seed_hi": col(hi, np.uint32, 0),
        "steps": col(None if p is None else (p.steps & 0xFFFFFFFF), np.uint32, 0),
        "greedy": col(None if p is None else p.greedy, np.bool_, True),
    }
