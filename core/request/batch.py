"""`ScheduledBatch`: what the scheduler picked for one step, before it becomes a
`ForwardBatch` (the model runner builds that) and after (``commit`` fills in where each
sampled token goes)."""

from __future__ import annotations

from dataclasses import dataclass, field

from anyware.plugin import ForwardMode
from anyware.request.request import Request


@dataclass
class ScheduledBatch:
    mode: ForwardMode
    reqs: list[Request]
    extend_lens: list[int]
    prefix_lens: list[int]
    samples: list[bool] = field(default_factory=list)
    # filled by ``commit``: where each sampled token goes in its request's output_ids (-1:
    # no token) and the request's page-table row at launch
    out_index: list[int] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        # fixed at schedule time: a partial prefill chunk produces no token
        if not self.samples:
            self.samples = [p + e == r.seq_len for r, p, e in
                            zip(self.reqs, self.prefix_lens, self.extend_lens)]

    @property
    def committed(self) -> bool:
        return bool(self.out_index) or not self.reqs

    @property
    def num_tokens(self) -> int:
        return sum(self.extend_lens)

    def sampling_rows(self) -> list[bool]:
        """Which requests produce a token this step."""
        return self.samples
