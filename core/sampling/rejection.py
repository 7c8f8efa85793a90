"""Speculative rejection sampling on the device (Leviathan et al. 2023; Chen et al. 2023).

A verify row of request ``r`` judges drafts ``d_1..d_m`` at positions ``0..m`` (position
``j``'s distribution ``p_j`` is the target's next-token distribution after ``d_j``, with
``d_0`` the request's last token). Draft ``d_{j+1}`` is accepted with probability
``min(1, p_j(d_{j+1}) / q_j(d_{j+1}))``; at the first rejection the token is drawn from the
residual ``norm(max(0, p_j - q_j))``; when every draft is accepted, one more token is drawn
from ``p_m``. Each kept token is then distributed exactly as the target's own sample, and
more drafts are kept than by exact matching of the target's seeded sample.

The drafters here propose deterministically (prompt lookup; a draft model's greedy decode),
so ``q_j`` is a point mass at the draft: the acceptance probability is ``p_j(d)``, and the
residual is ``p_j`` without ``d``, renormalised. ``p_j`` is the distribution the target
samples from: penalties over the output and the drafts before position ``j``, temperature,
top-k, top-p, min-p, in the order ``KernelOps.sample`` applies them (the portable reference,
``anyware.kernels.reference.sampling.filter_probs``). A draft that those filters removed has
``p_j(d) = 0`` and is always rejected.

Randomness is counter-based, as for one-token sampling: the acceptance uniform of a position
is a hash of (seed, step) on its own stream, and the residual draw is the exponential race of
``sampling_noise(seed, step)`` without the draft, so a seeded request is reproducible in any
batch and on any platform.
"""

from __future__ import annotations

import torch
from anyware.kernels.reference.sampling import filter_probs, sampling_noise

_ACCEPT_STREAM = 0x5DEECE66D  # xored into the seed: the acceptance uniforms' own noise stream


def target_probs(logits: torch.Tensor, temperatures: torch.Tensor, top_ks: torch.Tensor,
                 top_ps: torch.Tensor, min_ps: torch.Tensor) -> torch.Tensor:
    """The distribution one-token sampling draws from, normalised: fp32 ``[N, V]`` from
    penalised logits."""
    probs = torch.softmax(logits.float() / temperatures[:, None], dim=-1)
    probs = filter_probs(probs, top_ks, top_ps, min_ps)
    return probs / probs.sum(dim=-1, keepdim=True)


def rejection_chain(probs: torch.Tensor, seeds: torch.Tensor, steps: torch.Tensor,
                    spans: list[int], drafts: list[list[int]],
                    draft_probs: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rejection sampling of a chain of drafts.

    ``probs``: fp32 ``[N, V]``, ``N = sum(spans)``; request ``r`` owns ``spans[r] = 1 +
    len(drafts[r])`` consecutive rows (its positions ``0..m``). ``seeds`` / ``steps``: int64
    ``[N]`` per row (a row's step is the output index of the token it samples).

    Returns ``(tokens, counts)``: int64 ``[N]`` where request ``r``'s first ``counts[r]`` rows
    hold its kept tokens (accepted drafts, then the residual or bonus draw), and int64
    ``[R]`` ``counts`` (``1 + accepted``). No host sync.

    ``draft_probs``: fp32 ``[N, V]``, row ``j`` the distribution ``q`` the draft judged at
    row ``j`` was sampled from (processed like ``probs``; rows without a draft are ignored);
    ``None``: every draft is a point mass (proposed deterministically).
    """
    device = probs.device
    n, v = probs.shape
    k = max((len(d) for d in drafts), default=0)
    nxt, pos, owner, gather = [], [], [], []  # per row: draft judged (-1: none), position, req
    start = 0
    for r, (span, d) in enumerate(zip(spans, drafts)):
        nxt += [*d, -1]
        pos += list(range(span))
        owner += [r] * span
        gather += [start + min(j, span - 1) for j in range(k)] + [0] * (k == 0)
        start += span
    packed = torch.tensor(nxt + pos + owner + gather, dtype=torch.int64).to(device,
                                                                          non_blocking=True)
    nxt_t, pos_t, owner_t, gather_t = packed.split([n, n, n, len(gather)])
    has = nxt_t >= 0
    d = nxt_t.clamp(min=0)
    u = sampling_noise(seeds ^ _ACCEPT_STREAM, steps, 1)[:, 0]
    p_d = probs.gather(1, d[:, None]).squeeze(1)
    if draft_probs is None:  # q = one-hot(d): accept with p(d); residual = p without d
        accept = has & (u < p_d)
        residual = torch.where(torch.arange(v, device=device)[None, :] == d[:, None],
                               torch.zeros_like(probs), probs)
    else:  # accept with min(1, p(d) / q(d)); residual = max(0, p - q)
        q_d = draft_probs.gather(1, d[:, None]).squeeze(1)
        accept = has & (u * q_d < p_d)
        residual = (probs - draft_probs).clamp(min=0)
    residual = torch.where(has[:, None], residual, probs)  # the bonus row draws from p
    race = residual / -torch.log(sampling_noise(seeds, steps, v))
    drawn = race.argmax(dim=-1)
    if k:
        valid = (torch.arange(k, device=device)[None, :]
                 < torch.tensor([len(x) for x in drafts]).to(device)[:, None])
        chain = accept[gather_t.view(len(spans), k)] & valid
        accepted = chain.to(torch.int64).cumprod(dim=1).sum(dim=1)
    else:
        accepted = torch.zeros(len(spans), dtype=torch.int64, device=device)
    tokens = torch.where(pos_t < accepted[owner_t], d, drawn)
    return tokens, 1 + accepted
