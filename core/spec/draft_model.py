"""`DraftModelDrafter`: a small model of the target's tokenizer proposes ``k`` tokens by greedy
decoding on the device.

The draft runs in its own :class:`~anyware.executor.worker.ModelWorker`, built with
``share_pages_with`` the target's: the same page ids (and the target's page table) address
the draft's own KV pool, so the one ``KVManager`` governs both and a request's pages hold
its target KV in one pool and its draft KV in the other.

Per step (``prepare``), for every request that may verify (``L`` known tokens, up to ``m``
drafts): reserve pages for positions ``< L - 1 + m`` (what the draft writes; the target's
verify needs one more), then

* **catch up**: one forward over the positions whose draft KV is not valid yet, from ``D`` to
  ``L`` (chunked by the prefill budget), whose last logits give draft 1 (argmax);
* **decode** ``m - 1`` steps: draft ``i`` is fed at position ``L - 1 + i`` and gives draft
  ``i + 1``. The fed tokens stay on the device; the host reads all drafts once at the end.

Which positions hold valid draft KV (``D``) is tracked per request: after a step, the
positions ``< L`` (real tokens) plus each fed draft that the request's tokens later confirm
(the accepted ones), so nothing is recomputed after a verify. ``D`` falls back to 0 when the
request was retracted (its pages were released; the radix cache may hand it pages whose KV
the draft never wrote, so the draft prefills a cached prefix itself) and on the request's
first proposal (a prefix-cache hit at admission gives the target's KV only). Rejected drafts'
positions lie past ``D`` and are overwritten next time; ``KVManager.truncate`` never frees a
page below ``D``. The draft's KV only steers proposals: a stale value would cost acceptance,
never correctness (the target verifies every draft).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from anyware.executor.worker import ModelWorker
from anyware.plugin import ForwardBatch, ForwardMode
from anyware.request import Request
from anyware.scheduler.kv_manager import KVManager
from anyware.spec.drafter import Drafter, DraftItem


@dataclass
class _DraftState:
    retractions: int
    valid: int = 0  # positions whose draft KV is valid for this request
    fed_from: int = 0  # position where the last proposal's fed drafts start
    fed: list[int] = field(default_factory=list)  # drafts fed at fed_from, fed_from + 1, ...


class DraftModelDrafter(Drafter):
    name = "draft"

    def __init__(self, worker: ModelWorker, kv: KVManager, max_prefill_tokens: int) -> None:
        self.worker = worker
        self.kv = kv
        self.page_size = kv.page_size
        self.max_prefill_tokens = max(max_prefill_tokens, 1) if max_prefill_tokens > 0 else 1 << 30
        self._state: weakref.WeakKeyDictionary[Request, _DraftState] = weakref.WeakKeyDictionary()
        self._ready: dict[int, list[int]] = {}  # id(request) -> drafts of this step

    # ------------------------------------------------------------ bookkeeping
    def _valid_positions(self, req: Request) -> int:
        st = self._state.get(req)
        if st is None or st.retractions != req.retractions:
            st = self._state[req] = _DraftState(req.retractions)
            return 0
        valid = min(st.valid, req.seq_len - 1)  # the last position is fed again for its logits
        if st.fed and valid == st.fed_from:  # confirm the fed drafts the request kept
            known = req.tokens(st.fed_from, min(st.fed_from + len(st.fed), req.seq_len))
            for fed, real in zip(st.fed, known):
                if fed != real:
                    break
                valid += 1
        st.valid, st.fed = min(valid, req.seq_len - 1), []
        return st.valid

    def _slot(self, req: Request, pos: int) -> int:
        return req.pages[pos // self.page_size] * self.page_size + pos % self.page_size

    def _batch(self, mode: ForwardMode, reqs: list[Request], prefix: list[int],
               extend: list[int], input_ids: list[int], logit_counts: list[int]) -> ForwardBatch:
        slots = [self._slot(r, p + j) for r, p, e in zip(reqs, prefix, extend) for j in range(e)]
        width = max(-(-(p + e) // self.page_size) for p, e in zip(prefix, extend))
        batch = ForwardBatch.build(
            mode=mode, input_ids=input_ids, prefix_lens=prefix, extend_lens=extend,
            page_table=self.worker.page_table.rows([r.row for r in reqs], width),
            out_slots=slots, page_size=self.page_size, device=self.worker.device,
            logit_counts=logit_counts)
        return batch

    # ------------------------------------------------------------ the step
    @torch.inference_mode()
    def prepare(self, items: Sequence[DraftItem]) -> None:
        self._ready.clear()
        work: list[tuple[Request, int, int]] = []  # (request, valid positions, drafts)
        for it in items:
            req, m = it.request, it.max_tokens
            if m <= 0 or not self.kv.reserve(req, req.seq_len - 1 + m):
                continue
            work.append((req, self._valid_positions(req), m))
        if not work:
            return
        device = self.worker.device
        m_max = max(m for *_, m in work)
        drafts = torch.zeros((len(work), m_max), dtype=torch.int64, device=device)

        # catch up: positions [valid, L) in chunks of the prefill budget; each request's last
        # chunk yields its first draft
        todo = [(i, req, valid) for i, (req, valid, _) in enumerate(work)]
        while todo:
            budget, rows, rest = self.max_prefill_tokens, [], []
            for i, req, start in todo:
                n = min(req.seq_len - start, budget) if budget > 0 else 0
                if n <= 0:
                    rest.append((i, req, start))
                    continue
                rows.append((i, req, start, n))
                budget -= n
                if start + n < req.seq_len:
                    rest.append((i, req, start + n))
            exts = [n for *_, n in rows]
            mode = (ForwardMode.DECODE if max(exts) == 1 else
                    ForwardMode.EXTEND if min(exts) > 1 else ForwardMode.MIXED)
            last = [int(s + n == r.seq_len) for _, r, s, n in rows]
            batch = self._batch(
                mode, [r for _, r, _, _ in rows], [s for *_, s, _ in rows], exts,
                [t for _, r, s, n in rows for t in r.tokens(s, s + n)], last)
            logits = self.worker.run(batch)
            done = [i for (i, *_), f in zip(rows, last) if f]
            if done:
                idx = torch.tensor(done, dtype=torch.int64).to(device, non_blocking=True)
                drafts[idx, 0] = logits.argmax(dim=-1)
            todo = rest

        # decode: draft j is fed at position L - 1 + j and gives draft j + 1
        for j in range(1, m_max):
            live = [i for i, (_, _, m) in enumerate(work) if m > j]
            reqs = [work[i][0] for i in live]
            batch = self._batch(
                ForwardMode.DECODE, reqs, [r.seq_len - 1 + j for r in reqs], [1] * len(reqs),
                [0] * len(reqs), [1] * len(reqs))
            idx = torch.tensor(live, dtype=torch.int64).to(device, non_blocking=True)
            batch.input_ids = drafts[idx, j - 1]
            drafts[idx, j] = self.worker.run(batch).argmax(dim=-1)

        host = drafts.tolist()
        for (req, _, m), row in zip(work, host):
            st = self._state[req]
            st.valid = req.seq_len
            st.fed_from, st.fed = req.seq_len, row[: m - 1]
            self._ready[id(req)] = row[:m]

    def propose(self, request: Request, max_tokens: int) -> list[int]:
        return self._ready.pop(id(request), [])[:max_tokens]

    def release(self, request: Request) -> None:
        self._state.pop(request, None)
        self._ready.pop(id(request), None)

    def close(self) -> None:
        self._ready.clear()
