"""`OutputReserve`: how much of the running requests' future KV admission keeps free.

A request admitted now keeps growing: the rest of its prompt (chunked prefill), then one token
per step up to ``max_new_tokens``. Admitting on the prompt alone fills the pool with requests
whose decodes later run out of pages, and each shortfall retracts the newest request, whose
prompt and outputs are then computed again — work thrown away, at the time the batch is
largest. Reserving every request's whole remaining output is the opposite mistake: most
requests stop at an end-of-sequence token long before their limit, so the pool would sit
half empty.

So admission keeps free, for each running request, the pages of its unprefilled prompt plus a
*ratio* of its remaining output tokens. The ratio starts at ``0.7 * c`` (``c``: the
``--schedule-conservativeness`` knob, 1.0 by default, as SGLang names it), falls linearly to
``0.1 * c`` over 600 scheduling steps without a retraction — the pool is evidently large
enough for what the requests really generate — and jumps back to ``0.7 * c`` at a retraction.
``c = 0`` turns the reserve off (one page of headroom per running request, the behaviour
before this existed). A request is always admitted when nothing runs, whatever it may need.

The running requests' total is a sum over hundreds of Python objects (about 1 µs each), too
slow for every step of a host-bound engine, so it is cached: it only shrinks as requests
progress (each token moves a request's expected end by ``1 - ratio`` and its pages by one,
in page steps) or leave, so a cached total is a (slightly stale) overestimate. It is
recomputed every ``REFRESH_STEPS`` steps, after a retraction (the ratio went up), and — at
most every ``RECHECK_STEPS`` steps — when it is what stands between a waiting request and
admission.
"""

from __future__ import annotations

import math

from anyware.request.request import Request
from anyware.scheduler.kv_manager import KVManager

INIT_RATIO = 0.7
FLOOR_RATIO = 0.1
DECAY_STEPS = 600
REFRESH_STEPS = 64
RECHECK_STEPS = 4


class OutputReserve:
    def __init__(self, conservativeness: float, kv: KVManager, context_len: int) -> None:
        if conservativeness < 0:
            raise ValueError(f"schedule_conservativeness must be >= 0, got {conservativeness}")
        self.init = INIT_RATIO * conservativeness
        self.floor = FLOOR_RATIO * conservativeness
        self.ratio = self.init
        self.kv, self.context_len = kv, context_len
        self._total: int | None = None  # cached pages() of the running requests
        self._age = self._exact_age = 0  # steps since it was computed; since a blocked check

    @property
    def enabled(self) -> bool:
        return self.init > 0

    def step(self, retracted: bool) -> None:
        """One scheduling step: back to the initial ratio after a retraction, else decay."""
        self._age += 1
        self._exact_age += 1
        if retracted:
            self.ratio = self.init
            self._total = None
        else:
            self.ratio = max(self.floor, self.ratio - (self.init - self.floor) / DECAY_STEPS)

    def total(self, running: list[Request], exact: bool = False) -> int:
        """The pages ``running`` is expected to need: cached (see the module doc); ``exact``
        recomputes unless that was done less than ``RECHECK_STEPS`` steps ago."""
        if (self._total is None or self._age >= REFRESH_STEPS
                or (exact and self._exact_age >= RECHECK_STEPS)):
            self._total = sum(map(self.pages, running))
            self._age = 0
            if exact:
                self._exact_age = 0
        return self._total

    def admitted(self, req: Request) -> int:
        """``req`` joined the running requests (after :meth:`total`); the new total."""
        self._total = (self._total or 0) + self.pages(req)
        return self._total

    def pages(self, req: Request) -> int:
        """Pages ``req`` is expected to need beyond those it holds: its unprefilled prompt and
        ``ratio`` of the output tokens its length limits still allow."""
        remaining = min(req.params.max_new_tokens - len(req.output_ids),
                        self.context_len - req.seq_len)
        return self.kv.pages_needed(req, req.seq_len + math.ceil(self.ratio * max(remaining, 0)))
