"""`Eagle3Drafter`: an EAGLE-3 head (:class:`~anyware.model.eagle3.Eagle3Head`) proposes ``k``
tokens from the target's own hidden states (chain drafts, greedy).

Wiring (:class:`Eagle3Attachment`, run by the target's ``ModelWorker`` before its graphs are
captured): a feature tensor ``[slots, H]`` addressed like the target's KV cache; the target
model hands the hidden states entering three of its layers for every token it processes to
the head's ``fc``, whose output lands at the token's KV slot (inside the target's forward, so
graph replays do it too); the head runs in its own ``ModelWorker`` (one layer, its own KV
pool) that shares the target's page ids, as the draft model does.

The head's position ``p`` reads the token at ``p + 1`` and the feature of position ``p`` (the
target's hidden states that predicted the token at ``p + 1``); its logits predict the token
at ``p + 2``. For a request with ``L`` known tokens the target has processed positions
``< L - 1``, so per step (``prepare``), batched over the requests that may verify:

* **catch up**: one forward over positions ``[D, L - 1)`` (tokens ``[D + 1, L)``, chunked by
  the prefill budget) with the target's features, where ``D`` is how far the head's KV is
  valid (at most ``L - 2``: the last position is fed again for its logits); its last logits
  give draft 1;
* **draft** ``m - 1`` more: draft ``j`` is fed at position ``L - 2 + j`` with the head's own
  output hidden state of the previous position as the feature (scattered to that position's
  slot after each forward: the target overwrites it when it verifies the position).

After a step ``D = L - 1``: positions fed with the head's own features are recomputed from the
target's once the target has verified them. ``D`` is 0 on a request's first proposal and after
a retraction (as for the draft model). A stale feature or KV entry only costs acceptance: the
target verifies every draft.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from anyware.executor.worker import KVBudget, ModelWorker, WorkerConfig
from anyware.model.eagle3 import Eagle3Head, aux_layers
from anyware.plugin import ForwardMode, PlatformConfig
from anyware.request import Request
from anyware.runtime import PlatformDriver
from anyware.scheduler.kv_manager import KVManager
from anyware.spec.draft_model import DraftModelDrafter, _DraftState
from anyware.spec.drafter import DraftItem


class Eagle3Attachment:
    """Builds the head next to a target worker: pass :meth:`attach` as the target
    ``ModelWorker``'s ``before_setup``; then ``worker`` (the head's) and ``features`` exist."""

    def __init__(self, head: WorkerConfig, platform: PlatformDriver, pcfg: PlatformConfig,
                 device: torch.device, budget: KVBudget, topk: int = 1) -> None:
        self.head_cfg, self.platform, self.pcfg = head, platform, pcfg
        self.topk = topk  # logit rows per request of a tree level (Eagle3TreeDrafter)
        self.device, self.budget = device, budget
        self.worker: ModelWorker | None = None
        self.features: torch.Tensor | None = None

    def attach(self, target: ModelWorker) -> None:
        layers = aux_layers(self.head_cfg.model, target.cfg.model.num_layers)
        if not hasattr(target.model, "capture_aux_hidden"):
            raise ValueError(f"target model {type(target.model).__name__} cannot hand its hidden "
                             "states to an EAGLE-3 head")
        slots = target.num_pages * target.page_size
        self.features = torch.zeros((slots, self.head_cfg.model.hidden_size),
                                    dtype=self.pcfg.dtype, device=self.device)
        # the whole table (under tensor parallelism every rank joins this gather: rank.py)
        features, embed = self.features, target.model.embed_tokens.full_weight()

        def bind(worker: ModelWorker) -> None:
            worker.model.bind(features, embed, worker.max_running_requests * self.topk)

        self.worker = ModelWorker(self.head_cfg, self.platform, self.pcfg, self.device,
                                  self.budget, share_pages_with=target, before_setup=bind)
        head: Eagle3Head = self.worker.model

        def sink(states: list[torch.Tensor], batch) -> None:
            features.index_copy_(0, batch.out_slots, head.project(states))

        target.model.capture_aux_hidden(layers, sink)


class Eagle3Drafter(DraftModelDrafter):
    name = "eagle3"

    def __init__(self, worker: ModelWorker, kv: KVManager, max_prefill_tokens: int,
                 features: torch.Tensor) -> None:
        super().__init__(worker, kv, max_prefill_tokens)
        self.features = features
        self.head: Eagle3Head = worker.model

    def _start(self, req: Request) -> int:
        st = self._state.get(req)
        if st is None or st.retractions != req.retractions:
            st = self._state[req] = _DraftState(req.retractions)
        return min(st.valid, req.seq_len - 2)

    def _scatter_hidden(self, reqs: list[Request], positions: list[int]) -> None:
        """The head's output hidden state of each row becomes the feature at ``positions``."""
        slots = [self._slot(r, p) for r, p in zip(reqs, positions)]
        idx = torch.tensor(slots, dtype=torch.int64).to(self.worker.device, non_blocking=True)
        self.features.index_copy_(0, idx, self.head.hidden_out[: len(slots)])

    def _work(self, items: Sequence[DraftItem]) -> list[tuple[Request, int, int]]:
        """``(request, first position to feed, drafts)`` of the requests to draft for."""
        work: list[tuple[Request, int, int]] = []
        for it in items:
            req, m = it.request, it.max_tokens
            if m <= 0 or req.seq_len < 2 or not self.kv.reserve(req, req.seq_len - 1 + m):
                continue
            work.append((req, self._start(req), m))
        return work

    def _catch_up(self, work: list[tuple[Request, int, int]],
                  on_last: Callable[[list[int], list[Request], torch.Tensor], None]) -> None:
        """Positions ``[start, L - 1)`` fed tokens ``[start + 1, L)``, in chunks of the
        prefill budget; ``on_last(indices into work, requests, logits)`` for the requests
        whose last chunk ran (their logits at position ``L - 2``; ``head.hidden_out`` holds
        those rows' hidden states)."""
        todo = [(i, req, start) for i, (req, start, _) in enumerate(work)]
        while todo:
            budget, rows, rest = self.max_prefill_tokens, [], []
            for i, req, start in todo:
                end = req.seq_len - 1
                n = min(end - start, budget) if budget > 0 else 0
                if n <= 0:
                    rest.append((i, req, start))
                    continue
                rows.append((i, req, start, n))
                budget -= n
                if start + n < end:
                    rest.append((i, req, start + n))
            exts = [n for *_, n in rows]
            mode = (ForwardMode.DECODE if max(exts) == 1 else
                    ForwardMode.EXTEND if min(exts) > 1 else ForwardMode.MIXED)
            last = [int(s + n == r.seq_len - 1) for _, r, s, n in rows]
            batch = self._batch(
                mode, [r for _, r, _, _ in rows], [s for *_, s, _ in rows], exts,
                [t for _, r, s, n in rows for t in r.tokens(s + 1, s + n + 1)], last)
            logits = self.worker.run(batch)
            done = [(i, r) for (i, r, *_), f in zip(rows, last) if f]
            if done:
                on_last([i for i, _ in done], [r for _, r in done], logits)
            todo = rest

    @torch.inference_mode()
    def prepare(self, items: Sequence[DraftItem]) -> None:
        self._ready.clear()
        work = self._work(items)
        if not work:
            return
        device, hot = self.worker.device, self.head.hot_ids
        m_max = max(m for *_, m in work)
        drafts = torch.zeros((len(work), m_max), dtype=torch.int64, device=device)

        def first_draft(done: list[int], reqs: list[Request], logits: torch.Tensor) -> None:
            idx = torch.tensor(done, dtype=torch.int64).to(device, non_blocking=True)
            drafts[idx, 0] = hot[logits.argmax(dim=-1)]
            if m_max > 1:
                self._scatter_hidden(reqs, [r.seq_len - 1 for r in reqs])

        self._catch_up(work, first_draft)

        # draft j is fed at position L - 2 + j (its feature: the head's hidden state of the
        # position before) and gives draft j + 1
        for j in range(1, m_max):
            live = [i for i, (_, _, m) in enumerate(work) if m > j]
            reqs = [work[i][0] for i in live]
            batch = self._batch(
                ForwardMode.DECODE, reqs, [r.seq_len - 2 + j for r in reqs], [1] * len(reqs),
                [0] * len(reqs), [1] * len(reqs))
            idx = torch.tensor(live, dtype=torch.int64).to(device, non_blocking=True)
            batch.input_ids = drafts[idx, j - 1]
            drafts[idx, j] = hot[self.worker.run(batch).argmax(dim=-1)]
            if j + 1 < m_max:
                self._scatter_hidden(reqs, [r.seq_len - 1 + j for r in reqs])

        host = drafts.tolist()
        for (req, _, m), row in zip(work, host):
            st = self._state[req]
            st.valid, st.fed = req.seq_len - 1, []
            self._ready[id(req)] = row[:m]
