"""`Speculator`: one engine's speculative decoding — the configured drafter, wired between the
engine's step and the scheduler's draft source.

The engine calls ``before_schedule`` before each ``Scheduler.schedule`` (the automatic
off-switch's decision, then the drafter's batched ``prepare``), hands ``propose`` to the
scheduler as its draft source for a step that speculates (none for one that does not),
``scheduled`` with the batch the scheduler picked, ``after_process`` once a batch's tokens
are processed (``on_accept`` for each verify, ``release`` for each finished request), and
``after_step`` when the engine step ends (the switch learns the step's wall time and the
tokens it delivered).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from anyware.plugin import ForwardMode
from anyware.request import DraftTree, Request, ScheduledBatch
from anyware.spec.drafter import Drafter, DraftItem
from anyware.spec.switch import SpecSwitch

ALGORITHMS = ("ngram", "draft", "eagle3")


@dataclass(frozen=True)
class SpecConfig:
    """``algorithm``: ``"ngram"`` (prompt lookup), ``"draft"`` (a draft model at
    ``draft_model``) or ``"eagle3"`` (an EAGLE-3 head at ``draft_model``). ``num_draft_tokens``: ``k``, drafts verified per request per step.
    ``ngram_min`` / ``ngram_max``: the n-gram sizes prompt lookup tries (longest first).
    ``ngram_tree``: prompt lookup drafts token trees (several matches merged into a trie;
    greedy requests verify the tree, sampling ones its best chain). ``eagle_topk``: with
    ``eagle3``, the children each tree node offers (1: chains; more: token trees)."""

    algorithm: str
    num_draft_tokens: int = 4
    draft_model: str | None = None
    ngram_min: int = 1
    ngram_max: int = 4
    ngram_tree: bool = False
    eagle_topk: int = 1

    @property
    def tree(self) -> bool:
        """Whether the drafter proposes trees (the engine then needs
        ``AttentionFeatures.tree_mask``)."""
        return self.ngram_tree or self.eagle_topk > 1

    def check(self) -> None:
        """Raise ``ValueError`` (what to change) for an inconsistent configuration."""
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"speculative_algorithm {self.algorithm!r}; choose from {ALGORITHMS}")
        if self.num_draft_tokens < 1:
            raise ValueError("speculative_num_draft_tokens must be >= 1")
        if self.algorithm == "draft" and not self.draft_model:
            raise ValueError("speculative_algorithm 'draft' needs speculative_draft_model "
                             "(a model directory with the target's tokenizer)")
        if self.algorithm == "eagle3" and not self.draft_model:
            raise ValueError("speculative_algorithm 'eagle3' needs speculative_draft_model "
                             "(an EAGLE-3 head directory: config.json with architecture "
                             "LlamaForCausalLMEagle3 and its safetensors)")
        if self.algorithm == "ngram" and self.draft_model:
            raise ValueError("speculative_draft_model is only used with "
                             "speculative_algorithm 'draft' or 'eagle3'")
        if self.ngram_tree and self.algorithm != "ngram":
            raise ValueError("speculative_ngram_tree drafts token trees by prompt lookup: it "
                             "needs speculative_algorithm 'ngram' (draft and eagle3 draft "
                             "chains)")
        if self.eagle_topk < 1:
            raise ValueError("speculative_eagle_topk must be >= 1 (1: chain drafts)")
        if self.eagle_topk > 1 and self.algorithm != "eagle3":
            raise ValueError("speculative_eagle_topk > 1 drafts token trees with an EAGLE-3 "
                             "head: it needs speculative_algorithm 'eagle3'")
        if not 1 <= self.ngram_min <= self.ngram_max:
            raise ValueError("speculative n-gram sizes need 1 <= min <= max, got "
                             f"{self.ngram_min}..{self.ngram_max}")


def draft_room(req: Request, k: int, context_len: int) -> int:
    """The most drafts ``req`` may verify now: ``k``, capped so that the verify's up to
    ``drafts + 1`` tokens stay within its ``max_new_tokens`` and the context length (the
    scheduler applies the same cap)."""
    return min(k, req.params.max_new_tokens - len(req.output_ids) - 1,
               context_len - req.seq_len - 1)


class Speculator:
    def __init__(self, drafter: Drafter, num_draft_tokens: int, context_len: int,
                 switch: SpecSwitch | None = None) -> None:
        self.drafter = drafter
        self.k = num_draft_tokens
        self.context_len = context_len
        self.switch = switch if switch is not None else SpecSwitch(enabled=False)
        self.active = True  # this step speculates (the switch's decision)
        self.clock = time.perf_counter  # step times for the switch (tests may replace it)
        # the engine step under way, for the switch: its start, the tokens it delivered,
        # whether it stayed free of prefill rows
        self._t0: float | None = None
        self._tokens, self._clean = 0, True

    def propose(self, request: Request, max_tokens: int) -> list[int] | DraftTree:
        return self.drafter.propose(request, max_tokens) if self.active else []

    def before_schedule(self, running: Iterable[Request]) -> bool:
        """Ask the switch whether this step speculates; if so, ``prepare`` the drafter with
        every running request that may verify. Returns the decision (the engine hands the
        scheduler no draft source for a step that does not speculate)."""
        self._t0 = self.clock()
        running = list(running)
        decoding = sum(1 for r in running if not (r.in_prefill or r.finished))
        self.active = self.switch.decide(decoding)
        if not self.active:
            self.drafter.prepare([])
            return False
        items = []
        for req in running:
            if req.in_prefill or req.awaiting or req.finished:
                continue
            if req.output_ids and req.output_ids[-1] < 0:  # newest token still in flight
                continue
            room = draft_room(req, self.k, self.context_len)
            if room > 0:
                items.append(DraftItem(req, room))
        self.drafter.prepare(items)
        return True

    def scheduled(self, batch: ScheduledBatch | None) -> None:
        """The scheduler picked ``batch`` for this step (the switch leaves a step out of its
        measurement when the batch has prefill rows)."""
        if batch is not None and batch.mode not in (ForwardMode.DECODE, ForwardMode.VERIFY):
            self._clean = False

    def after_step(self, launched: ScheduledBatch | None) -> None:
        """The engine step that called ``before_schedule`` ends (having launched ``launched``
        and completed the batch before it, or this one): the switch learns its wall time and
        the tokens it delivered."""
        if self._t0 is not None:
            self.switch.observe(self._tokens, self.clock() - self._t0, self._clean)
        self._t0, self._tokens, self._clean = None, 0, True

    def after_process(self, batch: ScheduledBatch, tokens: list[list[int]]) -> None:
        """Tell the drafter what each verify in ``batch`` kept and which requests finished
        (and the switch how many tokens this step delivered)."""
        self._tokens += sum(len(t) for t in tokens)
        if batch.mode not in (ForwardMode.DECODE, ForwardMode.VERIFY):
            self._clean = False
        j = 0
        for req, samples, drafts in zip(batch.reqs, batch.sampling_rows(), batch.drafts):
            if samples:
                if drafts:
                    self.drafter.on_accept(req, len(drafts), len(tokens[j]) - 1)
                j += 1
            if req.finished:
                self.drafter.release(req)

    def close(self) -> None:
        self.drafter.close()
