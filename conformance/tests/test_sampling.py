"""Tier ops, sampling: exact (greedy is the argmax, lowest index on ties; seeded draws depend
only on (seed, step), never on the batch) and statistical (temperature, top-k, top-p, min-p:
chi-square against the exact filtered distribution computed here in fp64, at a fixed seed,
false-alarm rate ``stats.FALSE_ALARM_RATE`` per test)."""

from __future__ import annotations

import pytest
import torch
from anyware.plugin import SamplingTensors
from anyware_conformance.stats import FALSE_ALARM_RATE, chi_square


def params(n: int, dev, *, temperature=1.0, top_k=1 << 30, top_p=1.0, min_p=0.0, greedy=False,
           seeds=None, steps=None) -> SamplingTensors:
    def full(v, dtype):
        return torch.full((n,), v, dtype=dtype, device=dev)

    return SamplingTensors(
        temperatures=full(temperature, torch.float32), top_ks=full(top_k, torch.int32),
        top_ps=full(top_p, torch.float32), min_ps=full(min_p, torch.float32),
        seeds=(seeds if seeds is not None else torch.arange(n, dtype=torch.int64) * 7919 + 1).to(dev),
        steps=(steps if steps is not None else torch.zeros(n, dtype=torch.int64)).to(dev),
        greedy=full(greedy, torch.bool),
    )


def exact_distribution(logits: torch.Tensor, temperature, top_k, top_p, min_p) -> torch.Tensor:
    """The contract's filtered distribution in fp64 (see ``KernelOps.sample``)."""
    p = torch.softmax(logits.double() / temperature, dim=-1)
    sp, order = p.sort(descending=True, stable=True)
    keep = torch.arange(p.numel()) < top_k
    sp = sp * keep
    before = torch.cumsum(sp, 0) - sp
    keep &= before < top_p * sp.sum()
    keep &= sp >= min_p * sp[0]
    keep[0] = True
    mask = torch.zeros_like(keep).scatter(0, order, keep)
    q = p * mask
    return q / q.sum()


def mark(capability):
    return pytest.mark.anyware(tier="ops", capability=capability)


@mark("ops.sample.greedy")
def test_greedy_is_argmax_lowest_index_on_ties(platform, conf, gen):
    ops, dev = platform.ops(), platform.device
    b, v = 64, 1000
    logits = torch.randn((b, v), generator=gen)
    for row in range(0, b, 2):  # plant ties: the maximum appears again at a later index
        top = int(logits[row].argmax())
        later = int(torch.randint(top + 1, v, (1,), generator=gen)) if top < v - 1 else top
        logits[row, later] = logits[row, top]
        if row % 4 == 0 and top > 0:  # and at an earlier one: lowest index wins
            logits[row, 0] = logits[row, top]
    want = logits.argmax(dim=-1)  # torch returns the first maximal index
    with conf.runs(ops, "sample"):
        got = ops.sample(logits.to(dev), params(b, dev, greedy=True))
    conf.on_device("sample", got)
    conf.equal("greedy tokens", got, want, op="sample.greedy")


@mark("ops.sample.seeded")
def test_seeded_draw_independent_of_batch(platform, conf, gen):
    ops, dev = platform.ops(), platform.device
    b, v = 24, 300
    logits = torch.randn((b, v), generator=gen) * 2
    seeds = torch.randint(0, 1 << 62, (b,), generator=gen)
    steps = torch.randint(0, 1 << 20, (b,), generator=gen)
    p = params(b, dev, temperature=0.9, top_k=50, top_p=0.95, min_p=0.01, seeds=seeds, steps=steps)
    with conf.runs(ops, "sample"):
        full = ops.sample(logits.to(dev), p).cpu()
    again = ops.sample(logits.to(dev), p).cpu()
    conf.equal("same batch, same seeds", again, full, op="sample.seeded")
    perm = torch.randperm(b, generator=gen)[: b // 2]  # a different batch composition
    sub = params(len(perm), dev, temperature=0.9, top_k=50, top_p=0.95, min_p=0.01,
                 seeds=seeds[perm], steps=steps[perm])
    part = ops.sample(logits[perm].to(dev), sub).cpu()
    conf.equal("subset/permuted batch", part, full[perm], op="sample.seeded")
    single = ops.sample(logits[perm[:1]].to(dev), params(
        1, dev, temperature=0.9, top_k=50, top_p=0.95, min_p=0.01, seeds=seeds[perm[:1]],
        steps=steps[perm[:1]])).cpu()
    conf.equal("batch of one", single, full[perm[:1]], op="sample.seeded")
    other_step = ops.sample(logits.to(dev), params(
        b, dev, temperature=0.9, top_k=50, top_p=0.95, min_p=0.01, seeds=seeds,
        steps=steps + 1)).cpu()
    assert not torch.equal(other_step, full), "the draw does not depend on the step"


# name: (temperature, top_k, top_p, min_p)
FILTERS = {
    "temperature": (0.7, 1 << 30, 1.0, 0.0),
    "top_k": (1.0, 4, 1.0, 0.0),
    "top_p": (1.0, 1 << 30, 0.6, 0.0),
    "min_p": (1.0, 1 << 30, 1.0, 0.15),
    "combined": (1.3, 6, 0.8, 0.05),
}
# a fixed, well-spread distribution over 12 tokens; the top-p boundary token carries real mass
LOGITS = torch.log(torch.tensor([0.3, 0.25, 0.2, 0.1, 0.05, 0.03, 0.025, 0.02, 0.012, 0.008,
                                 0.003, 0.002], dtype=torch.float64))
SHUFFLE = torch.tensor([7, 2, 11, 0, 5, 9, 1, 4, 10, 3, 8, 6])


@mark("ops.sample.distribution")
@pytest.mark.parametrize("name", list(FILTERS))
def test_sampling_distribution(platform, conf, name):
    ops, dev = platform.ops(), platform.device
    temperature, top_k, top_p, min_p = FILTERS[name]
    logits = LOGITS[SHUFFLE].float()
    n = 8000  # one draw per row: every row has its own seed (a fixed seed set: reproducible)
    with conf.runs(ops, "sample"):
        toks = ops.sample(logits.expand(n, -1).contiguous().to(dev), params(
            n, dev, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p))
    conf.on_device("sample", toks)
    toks = toks.cpu()
    want = exact_distribution(logits, temperature, top_k, top_p, min_p)
    counts = torch.bincount(toks, minlength=logits.numel()).double()
    outside = [int(i) for i in (counts > 0).nonzero() if want[i] == 0]
    stat, df, p = chi_square(counts, want)
    conf.record(what="chi_square", op="sample", statistic=stat, df=df, p_value=p,
                false_alarm_rate=FALSE_ALARM_RATE, outside_support=outside)
    assert not outside, f"sampled tokens {outside} that the {name} filter removes"
    assert p >= FALSE_ALARM_RATE, (
        f"{name}: chi-square {stat:.1f} with {df} dof, p={p:.2e} < {FALSE_ALARM_RATE}; "
        f"observed {counts.tolist()} vs expected {(want * n).round().tolist()}"
    )
