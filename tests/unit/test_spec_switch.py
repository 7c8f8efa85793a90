"""The speculative off-switch's decisions from measured throughputs (no clocks): it measures
both modes first, pauses when drafts do not pay at a batch-size bucket (and only there),
resumes with hysteresis, probes the mode not taken, and never pauses when disabled."""

import pytest
from anyware.spec import SpecSwitch
from anyware.spec.switch import bucket


def feed(sw, n, spec_thr, plain_thr, batch=4, steps=200):
    """Run ``steps`` decisions; each observes its mode's throughput. Returns the decisions."""
    taken = []
    for _ in range(steps):
        on = sw.decide(batch)
        taken.append(on)
        sw.observe(on, batch, n if on else batch, n / spec_thr if on else batch / plain_thr)
    return taken


def test_buckets():
    assert [bucket(n) for n in (0, 1, 2, 3, 4, 5, 32, 33)] == [1, 1, 2, 4, 4, 8, 32, 64]


def test_pauses_where_drafts_do_not_pay_and_probes():
    sw = SpecSwitch(min_samples=3, probe_every=10)
    taken = feed(sw, 8, spec_thr=50.0, plain_thr=100.0)  # drafts halve the throughput
    # both measured first (a mode's first step is not counted: it may compile kernels)
    assert taken[:4] == [True] * 4 and taken[4:8] == [False] * 4
    assert sw.counters.switch_offs == 1 and sw.counters.switch_ons == 0
    late = taken[20:]
    assert late.count(True) == len(late) // 10  # only the probes speculate
    assert sw.counters.paused_steps == taken[8:].count(False)
    assert sw.gain(4) == pytest.approx(0.5)
    assert sw.decide(64)  # another bucket is judged on its own


def test_keeps_speculating_when_it_pays_and_resumes_with_hysteresis():
    sw = SpecSwitch(min_samples=2, probe_every=5, margin=0.1, alpha=1.0)
    feed(sw, 8, spec_thr=200.0, plain_thr=100.0, steps=50)
    assert sw.counters.switch_offs == 0
    feed(sw, 8, spec_thr=95.0, plain_thr=100.0, steps=50)  # within the margin: stays on
    assert sw.counters.switch_offs == 0
    feed(sw, 8, spec_thr=80.0, plain_thr=100.0, steps=50)
    assert sw.counters.switch_offs == 1
    feed(sw, 8, spec_thr=105.0, plain_thr=100.0, steps=50)  # within the margin: stays off
    assert sw.counters.switch_ons == 0
    feed(sw, 8, spec_thr=150.0, plain_thr=100.0, steps=50)  # probes see it pay again
    assert sw.counters.switch_ons == 1 and sw.decide(4)


def test_a_slow_first_step_is_not_counted():
    sw = SpecSwitch(min_samples=2, probe_every=100)
    on = sw.decide(1)
    sw.observe(on, 1, 1, 1000.0)  # compiling: a thousand times slower
    feed(sw, 4, spec_thr=300.0, plain_thr=100.0, batch=1, steps=40)
    assert sw.counters.switch_offs == 0 and sw.gain(1) == pytest.approx(3.0)


def test_disabled_always_speculates():
    sw = SpecSwitch(enabled=False)
    assert all(feed(sw, 8, spec_thr=1.0, plain_thr=100.0))
    assert sw.counters.switch_offs == 0 and sw.counters.paused_steps == 0


def test_bad_settings():
    with pytest.raises(ValueError):
        SpecSwitch(probe_every=1)
