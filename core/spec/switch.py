"""`SpecSwitch`: the automatic off-switch of speculative decoding.

Speculation pays when the tokens a step produces per second with drafts (drafting, the
verify forward, more tokens per request) beat those without (one decode forward, one token
per request). Both depend on the batch size (a verify of ``k + 1`` tokens per request is
nearly free at batch 1 and costs ``k + 1`` decode rows at a large batch) and on the drafts'
acceptance (which depends on the text). So the switch measures, online and per batch-size
bucket (powers of two), for decode-only steps (DECODE or VERIFY: no prefill rows, which would
distort the times):

* ``thr[mode]`` — tokens produced per second of step, an exponential moving average, for
  steps taken with speculation on (``mode`` "spec") and off ("plain"); a step's time is the
  wall time of the engine step that launched it (drafting included). A mode's first step at
  a bucket is not counted (it may include compiling kernels).

Decision per step, for the bucket of the current number of decoding requests: with too few
samples of either mode, take the mode that lacks them (so both get measured); else speculate
while ``gain = thr[spec] / thr[plain]`` stays above ``1 - margin`` once on, and turn back on
only when it rises above ``1 + margin`` (hysteresis). Estimates go stale in the mode not
taken, so every ``probe_every`` steps of a bucket one step takes the other mode (a probe).
Output never changes: the switch only decides whether drafts are proposed.

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
    thr: dict[str, float] = field(default_factory=dict)  # mode -> tokens / s (EMA)
    samples: dict[str, int] = field(default_factory=lambda: {"spec": 0, "plain": 0})
    on: bool = True
    steps: int = 0  # decisions taken in this bucket (for probes)
    warm: set[str] = field(default_factory=set)  # modes whose first (skipped) step was seen


@dataclass
class SwitchCounters:
    paused_steps: int = 0
    switch_offs: int = 0
    switch_ons: int = 0


class SpecSwitch:
    """``enabled`` False: always speculate (the switch only measures)."""

    def __init__(self, enabled: bool = True, margin: float = 0.05, probe_every: int = 32,
                 alpha: float = 0.2, min_samples: int = 3) -> None:
        if not 0 <= margin < 1 or probe_every < 2 or not 0 < alpha <= 1 or min_samples < 1:
            raise ValueError("SpecSwitch: need 0 <= margin < 1, probe_every >= 2, "
                             "0 < alpha <= 1, min_samples >= 1")
        self.enabled, self.margin, self.probe_every = enabled, margin, probe_every
        self.alpha, self.min_samples = alpha, min_samples
        self.buckets: dict[int, _Bucket] = {}
        self.counters = SwitchCounters()

    def _bucket(self, batch_size: int) -> _Bucket:
        return self.buckets.setdefault(bucket(batch_size), _Bucket())

    def gain(self, batch_size: int) -> float | None:
        """Measured ``thr[spec] / thr[plain]`` at ``batch_size``'s bucket (None: not yet)."""
        b = self.buckets.get(bucket(batch_size))
        if b is None or "spec" not in b.thr or not b.thr.get("plain"):
            return None
        return b.thr["spec"] / b.thr["plain"]

    def decide(self, batch_size: int) -> bool:
        """Whether this step (``batch_size`` decoding requests) speculates."""
        if not self.enabled or batch_size <= 0:
            return True
        b = self._bucket(batch_size)
        b.steps += 1
        for mode in ("spec", "plain"):  # measure both before judging
            if b.samples[mode] < self.min_samples:
                return mode == "spec"
        gain = b.thr["spec"] / b.thr["plain"]
        if b.on and gain < 1 - self.margin:
            b.on = False
            self.counters.switch_offs += 1
        elif not b.on and gain > 1 + self.margin:
            b.on = True
            self.counters.switch_ons += 1
        if b.steps % self.probe_every == 0:  # refresh the mode not taken
            return not b.on
        if not b.on:
            self.counters.paused_steps += 1
        return b.on

    def observe(self, speculated: bool, batch_size: int, tokens: int, seconds: float) -> None:
        """A decode-only step of ``batch_size`` requests produced ``tokens`` in ``seconds``."""
        if batch_size <= 0 or seconds <= 0 or tokens <= 0:
            return
        b = self._bucket(batch_size)
        mode = "spec" if speculated else "plain"
        if mode not in b.warm:  # a mode's first step at a bucket may compile kernels: skip it
            b.warm.add(mode)
            return
        thr = tokens / seconds
        old = b.thr.get(mode)
        b.thr[mode] = thr if old is None else old + self.alpha * (thr - old)
        b.samples[mode] += 1
