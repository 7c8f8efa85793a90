"""`ScheduledBatch`: what the scheduler picked for one step, before it becomes a
`ForwardBatch` (the model runner builds that) and after (``commit`` fills in where each
sampled token goes)."""

from __future__ import annotations

from dataclasses import dataclass, field

from anyware.plugin import ForwardMode
from anyware.request.draft_tree import DraftTree
from anyware.request.request import Request


@dataclass
class ScheduledBatch:
    """One step's work. Request ``i`` extends ``extend_lens[i]`` new tokens on top of
    ``prefix_lens[i]`` computed ones.

    drafts: per request, the draft tokens it verifies this step (empty: no verify). A verify
        row's new tokens are the request's last token followed by its drafts
        (``extend_lens[i] == 1 + len(drafts[i])``); it needs logits for every one of them and
        produces between 1 and ``len(drafts[i]) + 1`` tokens.
    samples: per request, whether it produces tokens this step (a partial prefill chunk does
        not); fixed at schedule time.
    prompt_lp: per request, the prompt positions ``(start, end)`` whose logprobs (of the prompt
        token after each) this step computes, or ``None`` (empty list: nobody asks). Such a
        request gets a logit row for every new position from ``start`` on: rows ``start ..
        end - 1`` are its prompt logprobs, its last row is its sampling row when it samples.
    trees: per request, the :class:`DraftTree` its drafts form (``drafts[i]`` is then the
        tree's node tokens in node order), or ``None`` for a chain. Only a VERIFY batch
        carries trees; its forward feeds each node at ``prefix + depth`` under
        ``SpecInfo.tree_mask``.
    out_index / rows: filled by ``commit``: where the request's first new token goes in its
        ``output_ids`` (-1: no token) and its page-table row at launch.
    """

    mode: ForwardMode
    reqs: list[Request]
    extend_lens: list[int]
    prefix_lens: list[int]
    samples: list[bool] = field(default_factory=list)
    drafts: list[list[int]] = field(default_factory=list)
    prompt_lp: list[tuple[int, int] | None] = field(default_factory=list)
    trees: list[DraftTree | None] = field(default_factory=list)
    out_index: list[int] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.drafts:
            self.drafts = [[] for _ in self.reqs]
        if not self.trees:
            self.trees = [None] * len(self.reqs)
        if not self.samples:
            self.samples = [p + e == len(r.prompt_ids) + len(r.output_ids) + len(d)
                            and r.params.max_new_tokens > 0
                            for r, p, e, d in
                            zip(self.reqs, self.prefix_lens, self.extend_lens, self.drafts)]

    @property
    def committed(self) -> bool:
        return bool(self.out_index) or not self.reqs

    @property
    def num_tokens(self) -> int:
        return sum(self.extend_lens)

    @property
    def has_verify(self) -> bool:
        return any(self.drafts)

    @property
    def has_tree(self) -> bool:
        return any(t is not None for t in self.trees)

    def sampling_rows(self) -> list[bool]:
        """Which requests produce tokens this step."""
        return self.samples

    def logit_counts(self) -> list[int]:
        """Logit rows per request: its last ``n`` new tokens (0 for a partial prefill chunk, 1
        for a decode or a prompt's last chunk, ``1 + len(drafts)`` for a verify, every position
        from ``prompt_lp[i][0]`` on for prompt logprobs)."""
        counts = [(1 + len(d)) if s else 0 for s, d in zip(self.samples, self.drafts)]
        for i, span in enumerate(self.prompt_lp):
            if span is not None:
                counts[i] = self.prefix_lens[i] + self.extend_lens[i] - span[0]
        return counts

    def sampling_logit_rows(self) -> list[int] | None:
        """Indices of the logit rows the sampler draws from (each sampling request's rows, in
        order), or ``None`` when that is every row (no prompt logprobs in this step)."""
        if not any(s is not None for s in self.prompt_lp):
            return None
        rows, base = [], 0
        for c, s, d in zip(self.logit_counts(), self.samples, self.drafts):
            if s:
                rows.extend(range(base + c - 1 - len(d), base + c))
            base += c
        return rows

    def prompt_logit_rows(self) -> list[int]:
        """Indices of the logit rows of prompt logprobs, request by request, in order."""
        rows, base = [], 0
        for c, span in zip(self.logit_counts(), self.prompt_lp or [None] * len(self.reqs)):
            if span is not None:
                rows.extend(range(base, base + span[1] - span[0]))
            base += c
        return rows
