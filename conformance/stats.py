"""Goodness of fit without scipy: Pearson's chi-square with the p-value from torch's
regularised upper incomplete gamma function."""

from __future__ import annotations

import math

import torch

FALSE_ALARM_RATE = 1e-4  # per distribution test: a correct sampler fails with this probability


def chi_square(counts: torch.Tensor, probs: torch.Tensor, min_expected: float = 5.0):
    """Pearson's test of observed ``counts`` against exact ``probs`` (fp64, sums to 1, over the
    same bins). Bins with expected count below ``min_expected`` are pooled into one.
    Returns ``(statistic, degrees_of_freedom, p_value)``."""
    counts = counts.to(torch.float64)
    n = float(counts.sum())
    expected = probs.to(torch.float64) * n
    small = expected < min_expected
    obs = torch.cat([counts[~small], counts[small].sum().reshape(1)])
    exp = torch.cat([expected[~small], expected[small].sum().reshape(1)])
    keep = exp > 0
    obs, exp = obs[keep], exp[keep]
    df = int(obs.numel()) - 1
    if df < 1:
        return 0.0, 0, 1.0
    stat = float(((obs - exp) ** 2 / exp).sum())
    p = float(torch.special.gammaincc(torch.tensor(df / 2.0, dtype=torch.float64),
                                      torch.tensor(stat / 2.0, dtype=torch.float64)))
    return stat, df, p if math.isfinite(p) else 0.0
