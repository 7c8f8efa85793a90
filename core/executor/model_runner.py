"""`ModelRunner`: builds `ForwardBatch`es from scheduled batches and runs the model. It is the
`StepProgram` that execution strategies (eager, graphs, compiled) drive."""

from __future__ import annotations

import torch
from anyware.executor.future import FutureTokens
from anyware.executor.plan import StepPlan
from anyware.executor.tree import tree_inputs
from anyware.memory import KVPool, PageTable, move_kv
from anyware.plugin import (
    AttentionBackend,
    Bucket,
    ForwardBatch,
    ForwardMode,
    KVCache,
    SpecInfo,
    dummy_batch,
    pad_batch,
)
from anyware.request import ScheduledBatch


class ModelRunner:
    """``verify_tokens``: the most new tokens per request of this model's short multi-token
    steps (``StepProgram.verify_tokens``: ``k + 1`` for a speculating target, 2 for a draft
    model, 0 otherwise); graph strategies capture VERIFY graphs of that width."""

    def __init__(self, model: torch.nn.Module, attention: AttentionBackend, pool: KVPool,
                 page_table: PageTable, page_size: int, device: torch.device,
                 verify_tokens: int = 0) -> None:
        self.model = model
        self.attention = attention
        self.pool = pool
        self.page_table = page_table
        self.page_size = page_size
        self.device = device
        self.verify_tokens = verify_tokens
        self.future = FutureTokens(page_table.table.shape[0], device)
        # slot-addressed tensors ([slots, ...]) whose entries move with the KV of accepted
        # tree paths (an EAGLE-3 head's features)
        self.slot_tensors: list[torch.Tensor] = []

    @property
    def kv_cache(self) -> KVCache:
        return self.pool.cache

    @property
    def max_requests(self) -> int:
        """The most requests one forward carries: the page table's rows (``StepProgram``)."""
        return self.page_table.table.shape[0]

    @torch.inference_mode()
    def forward(self, batch: ForwardBatch) -> torch.Tensor:
        return self.model(batch, self.pool.cache)

    def build_batch(self, sb: ScheduledBatch) -> ForwardBatch:
        return self.batch_from_plan(self.plan(sb))

    def plan(self, sb: ScheduledBatch) -> StepPlan:
        """The host-side description of ``sb``'s forward (takes the pending page-table
        updates: the next :meth:`batch_from_plan` applies them)."""
        if sb.mode is ForwardMode.DECODE and not sb.prompt_lp:
            return self._plan_decode(sb)
        ps = self.page_size
        input_ids, out_slots = [], []
        for req, pre, ext, drafts in zip(sb.reqs, sb.prefix_lens, sb.extend_lens, sb.drafts):
            if drafts:  # verify: the last token, then the drafts
                input_ids.extend(req.tokens(pre, pre + 1))
                input_ids.extend(drafts)
            else:
                input_ids.extend(req.tokens(pre, pre + ext))
            pages = req.pages
            if ext == 1:
                out_slots.append(pages[pre // ps] * ps + pre % ps)
            else:
                out_slots.extend(pages[pos // ps] * ps + pos % ps for pos in range(pre, pre + ext))
        width = max(-(-(p + e) // ps) for p, e in zip(sb.prefix_lens, sb.extend_lens))
        rows = [r.row for r in sb.reqs]
        return StepPlan(
            mode=sb.mode.value, input_ids=input_ids, prefix_lens=list(sb.prefix_lens),
            extend_lens=list(sb.extend_lens), logit_counts=sb.logit_counts(),
            out_slots=out_slots, rows=rows, width=width,
            page_updates=self.page_table.take_pending(),
            num_draft_tokens=(max(len(d) for d in sb.drafts)
                              if sb.mode is ForwardMode.VERIFY else 0),
            publish_rows=[row for row, s in zip(rows, sb.sampling_rows()) if s],
            tree_parents=([list(t.parents) if t is not None else [] for t in sb.trees]
                          if sb.has_tree else None),
        )

    def _plan_decode(self, sb: ScheduledBatch) -> StepPlan:
        """:meth:`plan` of a DECODE batch (one new token per request, no drafts): flat list
        comprehensions instead of the per-request loop (the many-request host path)."""
        ps = self.page_size
        reqs, pres = sb.reqs, sb.prefix_lens
        # the token at position ``pre`` (``Request.tokens(pre, pre + 1)``)
        input_ids = [r.output_ids[p - n] if p >= n else r.prompt_ids[p]
                     for r, p, n in zip(reqs, pres, [len(r.prompt_ids) for r in reqs])]
        out_slots = [r.pages[p // ps] * ps + p % ps for r, p in zip(reqs, pres)]
        rows = [r.row for r in reqs]
        samples = sb.samples
        return StepPlan(
            mode=sb.mode.value, input_ids=input_ids, prefix_lens=list(pres),
            extend_lens=list(sb.extend_lens), logit_counts=[1 if s else 0 for s in samples],
            out_slots=out_slots, rows=rows, width=max(pres) // ps + 1,
            page_updates=self.page_table.take_pending(),
            publish_rows=[row for row, s in zip(rows, samples) if s])

    def move_kv(self, moves: list[tuple[int, int]]) -> None:
        """Copy the KV (and the ``slot_tensors`` rows) of each ``(source, destination)`` slot
        pair, queued on the device after everything launched before (no host sync)."""
        if moves:
            idx = torch.tensor(moves, dtype=torch.int64).to(self.device, non_blocking=True)
            move_kv(self.pool.cache, idx[:, 0], idx[:, 1], self.slot_tensors)

    def batch_from_plan(self, plan: StepPlan) -> ForwardBatch:
        """The :class:`ForwardBatch` of ``plan`` on this rank's device."""
        self.page_table.apply(plan.page_updates)
        table = self.page_table.rows(plan.rows, plan.width)
        mode = ForwardMode(plan.mode)
        batch = ForwardBatch.build(
            mode=mode,
            input_ids=plan.input_ids,
            prefix_lens=plan.prefix_lens,
            extend_lens=plan.extend_lens,
            page_table=table,
            out_slots=plan.out_slots,
            page_size=self.page_size,
            device=self.device,
            logit_counts=plan.logit_counts,
            spec=SpecInfo(plan.num_draft_tokens) if mode is ForwardMode.VERIFY else None,
        )
        if plan.tree_parents is not None:
            batch.positions, batch.spec.tree_mask = tree_inputs(
                plan.tree_parents, plan.prefix_lens, plan.extend_lens,
                plan.num_draft_tokens + 1, self.device)
        if plan.input_ids and min(plan.input_ids) < 0:  # tokens sampled by a step in flight
            batch.input_ids = self.future.resolve(batch.input_ids)
        return batch

    # ------------------------------------------------------------ StepProgram padding
    def pad(self, batch: ForwardBatch, bucket: Bucket) -> ForwardBatch:
        """``batch`` padded to ``bucket`` (``anyware.plugin.padding``); ``bucket.pages`` None
        widens the page table to the full per-request width."""
        return pad_batch(batch, bucket, full_width=self.page_table.max_pages)

    def dummy(self, mode: ForwardMode, bucket: Bucket) -> ForwardBatch:
        """A ``mode`` batch shaped like ``bucket`` on the scratch page (capture/compile)."""
        return dummy_batch(mode, bucket, page_size=self.page_size,
                           full_width=self.page_table.max_pages, device=self.device)
