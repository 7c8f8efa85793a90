"""Speculative rejection sampling keeps the target distribution: at a fixed seed, the first
kept token of a verify row is distributed as ``p_0`` and, given that draft 1 was accepted, the
second as ``p_1`` (Pearson chi-square; a correct sampler fails each test with probability
``FALSE_ALARM_RATE`` = 1e-4 over seeds, so 4 tests here raise a false alarm with probability
below 4e-4; the seeds are fixed, so a run is deterministic). Drafts are point masses (the
drafters') or sampled from a draft distribution ``q`` (the general Leviathan/Chen rule)."""

import pytest
import torch
from anyware.sampling.rejection import rejection_chain, target_probs
from anyware_conformance.stats import FALSE_ALARM_RATE, chi_square

V, R, K = 8, 20000, 2


def dist(seed: int, temp: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(V, generator=g) * 1.5 / temp, dim=-1)


@pytest.mark.parametrize("sampled_drafts", [False, True])
def test_kept_tokens_follow_the_target_distribution(sampled_drafts):
    p = torch.stack([dist(1), dist(2), dist(3)])  # positions 0..K
    g = torch.Generator().manual_seed(7)
    if sampled_drafts:
        q = torch.stack([dist(11), dist(12), dist(13)])
        drafts = torch.stack([torch.multinomial(q[j], R, replacement=True, generator=g)
                              for j in range(K)], dim=1).tolist()
        draft_probs = q.repeat(R, 1)
    else:  # a likely draft then an unlikely one
        drafts = [[int(p[0].argmax()), int(p[1].argmin())]] * R
        draft_probs = None
    probs = p.repeat(R, 1)
    seeds = torch.arange(R, dtype=torch.int64).repeat_interleave(K + 1)
    steps = torch.arange(K + 1, dtype=torch.int64).repeat(R) + 5
    tokens, counts = rejection_chain(probs, seeds, steps, [K + 1] * R, drafts, draft_probs)
    tokens = tokens.view(R, K + 1)
    assert counts.min() >= 1 and counts.max() <= K + 1

    first = tokens[:, 0]
    _, _, pv = chi_square(torch.bincount(first, minlength=V), p[0].double())
    assert pv > FALSE_ALARM_RATE, pv
    d1 = torch.tensor([d[0] for d in drafts])
    accepted = counts >= 2
    assert torch.equal(accepted, first == d1)  # a kept draft is the draft itself
    second = tokens[accepted, 1]
    assert second.numel() > 1000
    _, _, pv = chi_square(torch.bincount(second, minlength=V), p[1].double())
    assert pv > FALSE_ALARM_RATE, pv


def test_acceptance_probability_is_p_of_the_draft_for_point_masses():
    """A point-mass draft is kept with probability p(d): the filtered-out draft never, a
    certain one always."""
    logits = torch.tensor([[4.0, 3.0, 0.0, -2.0]] * 3)
    ones = torch.ones(3)
    probs = target_probs(logits, ones, torch.tensor([2, 4, 4]), ones, torch.zeros(3))
    assert probs[0, 2] == 0 and torch.allclose(probs.sum(-1), torch.ones(3))
    seeds, steps = torch.arange(3, dtype=torch.int64), torch.zeros(3, dtype=torch.int64)
    # row 0 judges draft 2 (removed by top-k 2): always rejected, the residual never gives it
    _, counts = rejection_chain(probs[:2], seeds[:2], steps[:2], [2], [[2]])
    assert counts.tolist() == [1]
    certain = torch.zeros(2, 4)
    certain[:, 1] = 1.0
    tokens, counts = rejection_chain(certain, seeds[:2], steps[:2], [2], [[1]])
    assert counts.tolist() == [2] and tokens.tolist() == [1, 1]
