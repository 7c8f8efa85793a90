"""The speculative off-switch (no clocks): it measures both modes over stints of steps first,
pauses when drafts do not pay at a batch-size bucket (and only there), resumes with
hysteresis, probes the mode not taken, leaves out each stint's first step and steps with
prefill rows, and never pauses when disabled. A simulated overlap-scheduled engine at batch
1 (a verify in flight every other step) shows it judges by the real throughput of each mode,
which charging every step to its own mode did not."""

import pytest
from anyware.spec import SpecSwitch
from anyware.spec.switch import bucket


def feed(sw, spec_thr, plain_thr, batch=4, steps=400, tokens=8):
    """``steps`` engine steps, each delivering ``tokens`` at its mode's throughput (no
    overlap). Returns the decisions."""
    taken = []
    for _ in range(steps):
        on = sw.decide(batch)
        taken.append(on)
        sw.observe(tokens, tokens / (spec_thr if on else plain_thr))
    return taken


def stints(taken, n):
    """The mode of each stint of ``n`` steps."""
    return [taken[i] for i in range(0, len(taken), n)]


def test_buckets():
    assert [bucket(n) for n in (0, 1, 2, 3, 4, 5, 32, 33)] == [1, 1, 2, 4, 4, 8, 32, 64]


def test_pauses_where_drafts_do_not_pay_and_probes():
    sw = SpecSwitch(min_samples=2, probe_every=5, stint_steps=4)
    taken = feed(sw, spec_thr=50.0, plain_thr=100.0)  # drafts halve the throughput
    modes = stints(taken, 4)
    assert all(taken[i] == taken[i - i % 4] for i in range(len(taken)))  # whole stints
    # both measured first (a mode's first stint is not counted: it may compile kernels)
    assert modes[:3] == [True] * 3 and modes[3:6] == [False] * 3
    assert sw.counters.switch_offs == 1 and sw.counters.switch_ons == 0
    late = modes[10:]
    assert 0 < late.count(True) <= len(late) // 5 + 1  # only the probes speculate
    assert sw.gain(4) == pytest.approx(0.5)
    assert sw.decide(64)  # another bucket is judged on its own


def test_keeps_speculating_when_it_pays_and_resumes_with_hysteresis():
    sw = SpecSwitch(min_samples=2, probe_every=4, margin=0.1, alpha=1.0, stint_steps=3)
    feed(sw, spec_thr=200.0, plain_thr=100.0, steps=120)
    assert sw.counters.switch_offs == 0
    feed(sw, spec_thr=95.0, plain_thr=100.0, steps=120)  # within the margin: stays on
    assert sw.counters.switch_offs == 0
    feed(sw, spec_thr=80.0, plain_thr=100.0, steps=120)
    assert sw.counters.switch_offs == 1
    feed(sw, spec_thr=105.0, plain_thr=100.0, steps=120)  # within the margin: stays off
    assert sw.counters.switch_ons == 0
    feed(sw, spec_thr=150.0, plain_thr=100.0, steps=120)  # probes see it pay again
    assert sw.counters.switch_ons == 1


def test_first_step_of_a_stint_and_prefill_steps_are_left_out():
    sw = SpecSwitch(min_samples=1, probe_every=100, stint_steps=4, alpha=1.0)
    for step in range(40):
        on = sw.decide(1)
        if step % 4 == 0:  # completes the other mode's launch: a thousand times slower
            sw.observe(1, 1000.0)
        elif step % 4 == 2:  # a prefill step: not decoding
            sw.observe(50, 0.001, clean=False)
        else:
            sw.observe(3 if on else 1, 1.0)
    assert sw.gain(1) == pytest.approx(3.0)


def test_disabled_always_speculates():
    sw = SpecSwitch(enabled=False)
    assert all(feed(sw, spec_thr=1.0, plain_thr=100.0))
    assert sw.counters.switch_offs == 0 and sw.counters.paused_steps == 0


def test_bad_settings():
    with pytest.raises(ValueError):
        SpecSwitch(probe_every=1)
    with pytest.raises(ValueError):
        SpecSwitch(stint_steps=1)


def overlap_engine(sw, accepted, steps=600, host=0.1, verify=1.0, decode=1.0):
    """One request under overlap scheduling: a step launches a batch and then completes the
    one launched before it (waiting for its device time). Speculating, the request verifies
    ``accepted`` + 1 tokens per verify but cannot launch while its verify is in flight, so it
    verifies every other step; plain, it decodes every step (its newest token is a
    placeholder). Returns the tokens delivered per unit of time."""
    inflight, awaiting, total_tokens, total_time = None, False, 0, 0.0
    for _ in range(steps):
        on = sw.decide(1)
        launched = None
        if not awaiting:
            launched = (verify, accepted + 1) if on else (decode, 1)
            awaiting = on
        seconds, tokens = host, 0
        if inflight is not None:  # complete the previous launch
            seconds, tokens = max(host, inflight[0]), inflight[1]
            if inflight[1] > 1 or launched is None:
                awaiting = False
        inflight = launched
        sw.observe(tokens, seconds)
        total_tokens, total_time = total_tokens + tokens, total_time + seconds
    return total_tokens / total_time


def test_overlap_at_batch_1_is_judged_by_each_modes_throughput():
    # useless drafts (nothing accepted): speculating halves the rate (a verify every other
    # step) -> paused
    sw = SpecSwitch(min_samples=2, probe_every=8, stint_steps=8)
    overlap_engine(sw, accepted=0)
    assert sw.gain(1) == pytest.approx(1 / 1.1, rel=0.05)
    assert sw.counters.switch_offs == 1 and sw.counters.paused_steps > 400
    # drafts that keep 3 of 4: 4 tokens per 1.1 time units against 1 per unit -> kept on
    sw = SpecSwitch(min_samples=2, probe_every=8, stint_steps=8)
    overlap_engine(sw, accepted=3)
    assert sw.gain(1) == pytest.approx(4 / 1.1, rel=0.05)
    assert sw.counters.switch_offs == 0
