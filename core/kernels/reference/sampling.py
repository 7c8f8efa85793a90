"""Sampling reference with counter-based noise.

The draw for request row ``b`` depends only on ``(seed[b], step[b], token id)``: noise comes
from an integer hash computed with 32-bit-safe int64 arithmetic (no overflow, so every backend
can reproduce it bit for bit), and the token is chosen by an exponential race
``argmax(p_i / E_i)`` with ``E_i = -log(u_i)``, which samples exactly from ``p`` restricted to
the kept tokens (no renormalisation needed).
"""

from __future__ import annotations

import torch
from anyware.plugin import SamplingTensors

_M = 0xFFFFFFFF


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``(x * c) mod 2^32`` for ``0 <= x < 2^32`` without int64 overflow."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & _M


def _hash32(x: torch.Tensor) -> torch.Tensor:
    x = x & _M
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def sampling_noise(seeds: torch.Tensor, steps: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Uniform noise in (0, 1), fp32 ``[B, V]``, a pure function of (seed, step, token id)."""
    seeds = seeds.to(torch.int64)
    h = _hash32(seeds & _M)
    h = _hash32(h ^ ((seeds >> 32) & _M))
    h = _hash32(h ^ (steps.to(torch.int64) & _M))
    idx = torch.arange(vocab_size, device=seeds.device, dtype=torch.int64)
    x = _hash32(h[:, None] ^ _mul32(idx, 0x9E3779B1)[None, :])
    return ((x >> 8).float() + 0.5) / float(1 << 24)


def filter_probs(probs: torch.Tensor, top_ks, top_ps, min_ps) -> torch.Tensor:
    """Zero the tokens removed by top-k, then top-p, then min-p (see ``KernelOps.sample``)."""
    sorted_p, order = probs.sort(dim=-1, descending=True, stable=True)
    rank = torch.arange(probs.shape[-1], device=probs.device)[None, :]
    keep = rank < top_ks.to(torch.int64)[:, None]
    sorted_p = sorted_p * keep
    before = torch.cumsum(sorted_p, dim=-1) - sorted_p  # mass strictly before this token
    keep &= before < top_ps[:, None] * sorted_p.sum(-1, keepdim=True)
    keep &= sorted_p >= min_ps[:, None] * sorted_p[:, :1]
    keep[:, 0] = True
    mask = torch.zeros_like(keep).scatter(1, order, keep)
    return probs * mask


def sample(logits: torch.Tensor, params: SamplingTensors) -> torch.Tensor:
    logits = logits.float()
    greedy = logits.argmax(dim=-1)
    temps = torch.where(params.greedy, torch.ones_like(params.temperatures), params.temperatures)
    probs = torch.softmax(logits / temps[:, None], dim=-1)
    probs = filter_probs(probs, params.top_ks, params.top_ps, params.min_ps)
    u = sampling_noise(params.seeds, params.steps, logits.shape[-1])
    race = probs / -torch.log(u)
    drawn = race.argmax(dim=-1)
    return torch.where(params.greedy, greedy, drawn)
