"""The continuous-batching scheduler.

Each step: running requests in decode get one token each (retracting the newest running
requests back to the queue when pages run out); the rest of the token budget goes to
prefill chunks, first of requests already mid-prefill, then of waiting requests in policy
order. Prefill and decode share one batch when ``mixed`` is on.

A batch's life: ``schedule`` picks it; ``commit`` records that it was launched (progress
advances, and each token it samples is appended as a placeholder, see
:mod:`anyware.executor.future`); ``process`` fills in the sampled values and applies the stop
rules. With overlap scheduling the next ``schedule`` and ``commit`` come before ``process``,
so stop rules that depend on a token's value act one step late: a request that stopped may
have one more decode in flight, whose result is dropped. Length limits are known from counts
and never cost that extra step.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from anyware.plugin import ForwardMode
from anyware.request import ScheduledBatch, TokenDelta
from anyware.request.request import Request, placeholder
from anyware.scheduler.kv_manager import KVManager
from anyware.scheduler.policy import FCFSPolicy, SchedulePolicy


@dataclass(frozen=True)
class SchedulerConfig:
    max_running_requests: int = 256
    chunked_prefill_size: int = 2048  # prefill tokens per step; <= 0 disables chunking
    mixed: bool = True
    context_len: int = 4096


@dataclass
class SchedulerCounters:
    prompt_tokens: int = 0
    generated_tokens: int = 0
    cached_prompt_tokens: int = 0
    retractions: int = 0
    finished: int = 0
    extra: dict = field(default_factory=dict)


class Scheduler:
    def __init__(self, cfg: SchedulerConfig, kv: KVManager, policy: SchedulePolicy | None = None,
                 eos_token_ids: tuple[int, ...] = ()) -> None:
        self.cfg = cfg
        self.kv = kv
        self.policy = policy or FCFSPolicy()
        self.eos = frozenset(eos_token_ids)
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.counters = SchedulerCounters()

    # ------------------------------------------------------------ queue management
    def add(self, req: Request) -> None:
        self.waiting.append(req)
        self.counters.prompt_tokens += len(req.prompt_ids)

    def abort(self, rid: str) -> bool:
        for req in list(self.waiting):
            if req.rid == rid:
                self.waiting.remove(req)
                self._finish(req, "abort")
                return True
        for req in self.running:
            if req.rid == rid:
                self.running.remove(req)
                req.is_running = False
                self.kv.release(req, cache_it=False)
                self._finish(req, "abort")
                return True
        return False

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    # ------------------------------------------------------------ scheduling
    def schedule(self) -> ScheduledBatch | None:
        retracted_before = self.counters.retractions
        decodes = self._schedule_decodes()
        budget = self.cfg.chunked_prefill_size if self.cfg.chunked_prefill_size > 0 else 1 << 62
        if decodes and not self.cfg.mixed:
            budget = 0
        prefills: list[tuple[Request, int, int]] = []
        # requests mid-prefill (chunked) continue first
        for req in self.running:
            if budget <= 0:
                break
            if req.in_prefill:
                n = self._reserve_chunk(req, budget)
                if n:
                    prefills.append((req, req.num_computed, n))
                    budget -= n
        if self.counters.retractions == retracted_before:  # no admission while memory is short
            budget = self._admit(prefills, budget, len(decodes))
        items = prefills + decodes
        if not items:
            return None
        mode = ForwardMode.DECODE if not prefills else (
            ForwardMode.EXTEND if not decodes else ForwardMode.MIXED)
        return ScheduledBatch(mode, [r for r, _, _ in items], [n for _, _, n in items],
                              [p for _, p, _ in items])

    def _wants_decode(self, req: Request) -> bool:
        """In decode and not waiting for its last token (a length limit already reached by
        the tokens in flight)."""
        return not req.in_prefill and not self._at_length_limit(req, len(req.output_ids))

    def _at_length_limit(self, req: Request, n_out: int) -> bool:
        return (n_out >= req.params.max_new_tokens
                or len(req.prompt_ids) + n_out >= self.cfg.context_len)

    def _schedule_decodes(self) -> list[tuple[Request, int, int]]:
        """One token for each decoding request, oldest first; when pages run out, retract
        the newest running request (possibly the one asking) until the rest fit."""
        for req in [r for r in self.running if self._wants_decode(r)]:
            while req.is_running and not self.kv.reserve(req, req.num_computed + 1):
                self._retract(self.running[-1])
        return [(r, r.num_computed, 1) for r in self.running if self._wants_decode(r)]

    def _retract(self, req: Request) -> None:
        """Preempt: release KV (kept in the prefix cache when enabled) and requeue first."""
        self.running.remove(req)
        req.is_running = False
        self.kv.release(req, cache_it=True)
        req.retractions += 1
        self.counters.retractions += 1
        self.waiting.appendleft(req)

    def _reserve_chunk(self, req: Request, budget: int) -> int:
        n = min(req.seq_len - req.num_computed, budget)
        while n > 0 and not self.kv.reserve(req, req.num_computed + n):
            # shrink to what the free pages allow (whole pages)
            fit = (len(req.pages) + self.kv.available_pages) * self.kv.page_size - req.num_computed
            n = min(n - 1, fit)
        return max(n, 0)

    def _admit(self, prefills: list, budget: int, num_decodes: int) -> int:
        if budget <= 0 or not self.waiting:
            return budget
        ordered = self.policy.order(list(self.waiting), self.kv.cached_prefix_len)
        for req in ordered:
            if budget <= 0 or len(self.running) >= self.cfg.max_running_requests:
                break
            if self.kv.page_table.num_free_rows == 0:
                break
            self.kv.admit(req)
            # keep a page of headroom per running request so decodes don't thrash
            headroom = len(self.running)
            n = min(req.seq_len - req.num_computed, budget)
            pages = self.kv.pages_needed(req, req.num_computed + n)
            if pages + headroom > self.kv.available_pages:
                fit = (len(req.pages) + self.kv.available_pages - headroom) * self.kv.page_size
                n = min(n, fit - req.num_computed)
            if n <= 0 or not self.kv.reserve(req, req.num_computed + n):
                self.kv.release(req, cache_it=False)
                break
            self.waiting.remove(req)
            if req.retractions == 0:  # report the prefix reused at first admission
                req.cached_tokens = req.num_computed
                self.counters.cached_prompt_tokens += req.num_computed
            self.running.append(req)
            req.is_running = True
            prefills.append((req, req.num_computed, n))
            budget -= n
        return budget

    # ------------------------------------------------------------ results
    def commit(self, batch: ScheduledBatch) -> None:
        """``batch`` was launched: its KV is written in stream order before anything launched
        later reads it. Advance each request, share completed prefill chunks through the
        prefix cache, and append a placeholder for each token the batch samples."""
        batch.out_index = [-1] * len(batch.reqs)
        batch.rows = [r.row for r in batch.reqs]
        for i, (req, pre, ext, samples) in enumerate(zip(
                batch.reqs, batch.prefix_lens, batch.extend_lens, batch.sampling_rows())):
            req.num_computed = pre + ext
            if ext > 1:  # a prefill chunk, complete or not: share its pages right away
                self.kv.cache_progress(req)
            if samples:
                batch.out_index[i] = len(req.output_ids)
                req.output_ids.append(placeholder(req.row))

    def process(self, batch: ScheduledBatch, tokens: list[int], logprobs: list | None) -> None:
        """Fill in the tokens ``batch`` sampled (one per sampling row, in order); apply the
        stop rules. Commits ``batch`` first if the caller has not (synchronous use)."""
        if not batch.committed:
            self.commit(batch)
        row = 0
        for req, samples, idx in zip(batch.reqs, batch.sampling_rows(), batch.out_index):
            if not samples:
                continue
            tok = tokens[row]
            lp = [logprobs[row]] if logprobs is not None and logprobs[row] is not None else None
            row += 1
            if req.finished:  # aborted, or stopped one step earlier (its extra decode)
                continue
            # a request retracted after this batch launched still takes its token
            req.output_ids[idx] = tok
            self.counters.generated_tokens += 1
            reason = self._stop_reason(req, tok, idx + 1)
            if reason is None:
                req.sink(TokenDelta(req.rid, [tok], lp, False, cached_tokens=req.cached_tokens))
                continue
            self._stop(req, idx + 1)
            req.finish_reason, req.stop_reason = reason
            self.counters.finished += 1
            req.sink(TokenDelta(req.rid, [tok], lp, True, req.finish_reason, req.stop_reason,
                                cached_tokens=req.cached_tokens))

    def _stop(self, req: Request, n_out: int) -> None:
        """Drop tokens past the last kept one (an in-flight decode's placeholder) and give the
        request's KV to the cache, or take it off the queue if it was retracted."""
        del req.output_ids[n_out:]
        if req.is_running:
            self.running.remove(req)
            req.is_running = False
            req.num_computed = min(req.num_computed, req.seq_len)
            self.kv.release(req, cache_it=True)
        elif req in self.waiting:
            self.waiting.remove(req)

    def _stop_reason(self, req: Request, tok: int, n_out: int) -> tuple[str, int | None] | None:
        p = req.params
        if n_out >= p.min_new_tokens:
            if tok in p.stop_token_ids:
                return "stop", tok
            if not p.ignore_eos and tok in self.eos:
                return "stop", None
        if self._at_length_limit(req, n_out):
            return "length", None
        return None

    def _finish(self, req: Request, reason: str) -> None:
        req.finish_reason = reason
        req.sink(TokenDelta(req.rid, [], None, True, reason, cached_tokens=req.cached_tokens))
