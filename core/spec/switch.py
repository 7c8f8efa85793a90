"""`SpecSwitch`: the automatic off-switch of speculative decoding.

Speculation pays when the tokens produced per second with drafts (drafting, the verify
forward, more tokens per request) beat those without (one decode forward, one token per
request). Both depend on the batch size (a verify of ``k + 1`` tokens per request is nearly
free at batch 1 and costs ``k + 1`` decode rows at a large batch) and on the drafts'
acceptance (which depends on the text). So the switch measures, online and per batch-size
bucket (powers of two), the throughput of each mode over **stints**: runs of ``stint_steps``
consecutive engine steps in one mode.

Why stints, not single steps: under overlap scheduling an engine step launches one batch and
completes the one before it, so a step's wall time and the tokens it delivers belong partly
to the previous step's mode; and at batch 1 a speculating request verifies only every other
step (its verify is in flight in between). Charging each step to its own mode mixed the two
modes' costs and kept the measured gain near 1 (run S6). A stint's throughput is the tokens
its steps delivered over their wall time, its **first step left out** (that step completes
the previous stint's launch), and steps with prefill rows left out (launched or completed
there: they measure prefill, not decoding). Each stint gives one sample; ``thr[mode]`` is an
exponential moving average of those samples. A mode's first stint at a bucket is not counted
(it may include compiling kernels).

Decision at the start of each stint, for the bucket of the current number of decoding
requests: with fewer than ``min_samples`` samples of either mode, take the mode that lacks
them; else speculate while ``gain = thr[spec] / thr[plain]`` stays above ``1 - margin`` once
on, and turn back on only when it rises above ``1 + margin`` (hysteresis). Every
``probe_every``-th stint of a bucket takes the other mode (a probe), so the estimate of the
mode not taken stays current. A stint ends early when the bucket changes. Output never
changes: the switch only decides whether drafts are proposed.

Counters (``Engine.stats`` / ``/metrics``): ``spec_paused_steps`` (decode steps taken without
speculation by the switch, probes excluded), ``spec_switch_offs``, ``spec_switch_ons``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def bucket(batch_size: int) -> int:
    """The power of two at or above ``batch_size`` (at least 1)."""
    return 1 << max(batch_size - 1, 0).bit_length()


@dataclass
class _Bucket:
    thr: dict[str, float] = field(default_factory=dict)  # mode -> tokens / s (EMA of stints)
    samples: dict[str, int] = field(default_factory=lambda: {"spec": 0, "plain": 0})
    on: bool = True
    stints: int = 0  # stints decided in this bucket (for probes)
    warm: set[str] = field(default_factory=set)  # modes whose first (skipped) stint was seen


@dataclass
class _Stint:
    bucket: int
    spec: bool
    probe: bool
    left: int  # steps still to take in this stint
    steps: int = 0  # steps taken so far
    tokens: int = 0  # delivered by its measured steps
    seconds: float = 0.0


@dataclass
class SwitchCounters:
    paused_steps: int = 0
    switch_offs: int = 0
    switch_ons: int = 0


class SpecSwitch:
    """``enabled`` False: always speculate (the switch only measures)."""

    def __init__(self, enabled: bool = True, margin: float = 0.05, probe_every: int = 8,
                 alpha: float = 0.3, min_samples: int = 2, stint_steps: int = 7) -> None:
        if (not 0 <= margin < 1 or probe_every < 2 or not 0 < alpha <= 1 or min_samples < 1
                or stint_steps < 2):
            raise ValueError("SpecSwitch: need 0 <= margin < 1, probe_every >= 2, "
                             "0 < alpha <= 1, min_samples >= 1, stint_steps >= 2")
        self.enabled, self.margin, self.probe_every = enabled, margin, probe_every
        self.alpha, self.min_samples, self.stint_steps = alpha, min_samples, stint_steps
        self.buckets: dict[int, _Bucket] = {}
        self.counters = SwitchCounters()
        self._stint: _Stint | None = None

    def _bucket(self, key: int) -> _Bucket:
        return self.buckets.setdefault(key, _Bucket())

    def gain(self, batch_size: int) -> float | None:
        """Measured ``thr[spec] / thr[plain]`` at ``batch_size``'s bucket (None: not yet)."""
        b = self.buckets.get(bucket(batch_size))
        if b is None or "spec" not in b.thr or not b.thr.get("plain"):
            return None
        return b.thr["spec"] / b.thr["plain"]

    def decide(self, batch_size: int) -> bool:
        """Whether this engine step (``batch_size`` decoding requests) speculates: the mode
        of the stint under way, or of a new one."""
        if not self.enabled or batch_size <= 0:
            return True
        key, st = bucket(batch_size), self._stint
        if st is None or st.left <= 0 or st.bucket != key:
            self._end_stint()
            st = self._stint = self._start(key)
        st.left -= 1
        if not st.spec and not st.probe:
            self.counters.paused_steps += 1
        return st.spec

    def _start(self, key: int) -> _Stint:
        b = self._bucket(key)
        b.stints += 1
        for mode in ("spec", "plain"):  # measure both before judging
            if b.samples[mode] < self.min_samples:
                return _Stint(key, mode == "spec", True, self.stint_steps)
        gain = b.thr["spec"] / b.thr["plain"]
        if b.on and gain < 1 - self.margin:
            b.on = False
            self.counters.switch_offs += 1
        elif not b.on and gain > 1 + self.margin:
            b.on = True
            self.counters.switch_ons += 1
        if b.stints % self.probe_every == 0:  # refresh the mode not taken
            return _Stint(key, not b.on, True, self.stint_steps)
        return _Stint(key, b.on, False, self.stint_steps)

    def observe(self, tokens: int, seconds: float, clean: bool = True) -> None:
        """The engine step just decided ended: it delivered ``tokens`` (from whichever batch
        it completed) in ``seconds`` of wall time; ``clean`` False when a batch it launched or
        completed had prefill rows."""
        st = self._stint
        if st is None:
            return
        st.steps += 1
        if st.steps > 1 and clean and seconds > 0:  # the first step completes the last stint's
            st.tokens += tokens
            st.seconds += seconds

    def _end_stint(self) -> None:
        st, self._stint = self._stint, None
        if st is None or st.tokens <= 0 or st.seconds <= 0:
            return
        b = self._bucket(st.bucket)
        mode = "spec" if st.spec else "plain"
        if mode not in b.warm:  # a mode's first stint at a bucket may compile kernels
            b.warm.add(mode)
            return
        thr = st.tokens / st.seconds
        old = b.thr.get(mode)
        b.thr[mode] = thr if old is None else old + self.alpha * (thr - old)
        b.samples[mode] += 1
