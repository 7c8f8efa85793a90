"""`ModelRunner`: builds `ForwardBatch`es from scheduled batches and runs the model. It is the
`StepProgram` that execution strategies (eager, graphs, compiled) drive."""

from __future__ import annotations

import torch
from anyware.executor.future import FutureTokens
from anyware.memory import KVPool, PageTable
from anyware.plugin import AttentionBackend, ForwardBatch, ForwardMode, KVCache, SpecInfo
from anyware.request import ScheduledBatch


class ModelRunner:
    def __init__(self, model: torch.nn.Module, attention: AttentionBackend, pool: KVPool,
                 page_table: PageTable, page_size: int, device: torch.device) -> None:
        self.model = model
        self.attention = attention
        self.pool = pool
        self.page_table = page_table
        self.page_size = page_size
        self.device = device
        self.future = FutureTokens(page_table.table.shape[0], device)

    @property
    def kv_cache(self) -> KVCache:
        return self.pool.cache

    @torch.inference_mode()
    def forward(self, batch: ForwardBatch) -> torch.Tensor:
        return self.model(batch, self.pool.cache)

    def build_batch(self, sb: ScheduledBatch) -> ForwardBatch:
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
        table = self.page_table.rows([r.row for r in sb.reqs], width)
        batch = ForwardBatch.build(
            mode=sb.mode,
            input_ids=input_ids,
            prefix_lens=sb.prefix_lens,
            extend_lens=sb.extend_lens,
            page_table=table,
            out_slots=out_slots,
            page_size=ps,
            device=self.device,
            logit_counts=sb.logit_counts(),
            spec=SpecInfo(len(sb.drafts[0])) if sb.mode is ForwardMode.VERIFY else None,
        )
        if input_ids and min(input_ids) < 0:  # decode inputs sampled by a step still in flight
            batch.input_ids = self.future.resolve(batch.input_ids)
        return batch

    # ------------------------------------------------------------ StepProgram helpers
    def dummy_decode_batch(self, batch_size: int) -> ForwardBatch:
        """Rows that read and write only the scratch page (page 0)."""
        table = torch.zeros((batch_size, self.page_table.max_pages), dtype=torch.int32)
        return ForwardBatch.build(
            mode=ForwardMode.DECODE,
            input_ids=[0] * batch_size,
            prefix_lens=[0] * batch_size,
            extend_lens=[1] * batch_size,
            page_table=table,
            out_slots=[0] * batch_size,
            page_size=self.page_size,
            device=self.device,
        )

    def pad_decode_batch(self, batch: ForwardBatch, batch_size: int) -> ForwardBatch:
        """``batch`` (DECODE) padded with scratch rows to ``batch_size`` rows and the page
        table widened to the full per-request width (fixed shapes for captured graphs)."""
        b = batch.batch_size
        pad = batch_size - b
        if pad < 0:
            raise ValueError(f"cannot pad a batch of {b} down to {batch_size}")
        dev = batch.input_ids.device

        def cat(x: torch.Tensor, fill: int) -> torch.Tensor:
            return torch.cat([x, torch.full((pad,), fill, dtype=x.dtype, device=dev)])

        table = torch.zeros((batch_size, self.page_table.max_pages), dtype=torch.int32, device=dev)
        table[:b, : batch.page_table.shape[1]] = batch.page_table
        return ForwardBatch(
            mode=ForwardMode.DECODE,
            input_ids=cat(batch.input_ids, 0),
            positions=cat(batch.positions, 0),
            seq_lens=cat(batch.seq_lens, 1),
            prefix_lens=cat(batch.prefix_lens, 0),
            extend_lens=cat(batch.extend_lens, 1),
            extend_start=torch.arange(batch_size, dtype=torch.int32, device=dev),
            page_table=table,
            out_slots=cat(batch.out_slots, 0),
            logits_indices=torch.arange(batch_size, dtype=torch.int64, device=dev),
            page_size=batch.page_size,
            seq_lens_cpu=batch.seq_lens_cpu + [1] * pad,
            prefix_lens_cpu=batch.prefix_lens_cpu + [0] * pad,
            extend_lens_cpu=batch.extend_lens_cpu + [1] * pad,
            padded_batch_size=batch_size,
        )

    def dummy_prefill_batch(self, num_tokens: int) -> ForwardBatch:
        """One fresh request of ``num_tokens`` tokens reading and writing only the scratch page,
        marked as padded to ``num_tokens`` (what a prefill graph is captured on)."""
        table = torch.zeros((1, self.page_table.max_pages), dtype=torch.int32)
        return ForwardBatch.build(
            mode=ForwardMode.EXTEND,
            input_ids=[0] * num_tokens,
            prefix_lens=[0],
            extend_lens=[num_tokens],
            page_table=table,
            out_slots=[0] * num_tokens,
            page_size=self.page_size,
            device=self.device,
        ).padded_prefill(num_tokens, table.shape[1])

    def pad_prefill_batch(self, batch: ForwardBatch, num_tokens: int) -> ForwardBatch:
        """A one-request fresh prefill padded to ``num_tokens`` with scratch rows, its page
        table widened to the full per-request width (fixed shapes for captured graphs)."""
        return batch.padded_prefill(num_tokens, self.page_table.max_pages)
