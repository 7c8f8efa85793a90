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

k tokens per step: with ``num_draft_tokens = k > 0`` and a draft source, a decoding request
whose tokens are all known verifies up to k draft tokens in one step and gets back between 1
and k+1 tokens. Its next position is unknown until then, so it sits out the steps launched
before that result is processed (``Request.awaiting``); the draft KV is marked unverified (never
cached) and ``KVManager.truncate`` releases the slots of rejected drafts. Under overlap
scheduling a speculating request therefore runs every other step (its verify overlaps with
the other requests' steps, not with its own next one).

Tree drafts: a draft source may return a ``DraftTree``; a greedy request verifies it whole in
a VERIFY batch (one without prefill chunks), otherwise its chain of first children.
``process`` records the slot copies that bring an accepted path's KV to consecutive
positions (``take_kv_moves``) before ``truncate`` releases the rest.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from anyware.plugin import ForwardMode
from anyware.request import DraftTree, ScheduledBatch, TokenDelta
from anyware.request.request import Request, placeholder
from anyware.scheduler.delivery import Delivery
from anyware.scheduler.kv_manager import KVManager
from anyware.scheduler.output_reserve import OutputReserve
from anyware.scheduler.policy import FCFSPolicy, SchedulePolicy
from anyware.scheduler.tree_moves import path_moves


@dataclass(frozen=True)
class SchedulerConfig:
    max_running_requests: int = 256
    chunked_prefill_size: int = 2048  # prefill tokens per step; <= 0 disables chunking
    mixed: bool = True
    context_len: int = 4096
    num_draft_tokens: int = 0  # k: draft tokens a decoding request may verify per step
    # scales the share of running requests' remaining output that admission keeps free
    # (OutputReserve); 0: none beyond a page per running request
    schedule_conservativeness: float = 0.0


DraftSource = Callable[[Request, int], "Sequence[int] | DraftTree"]
"""``propose(request, max_tokens)`` -> up to ``max_tokens`` draft tokens that would follow the
request's tokens (all known when called), or a :class:`DraftTree` of up to ``max_tokens``
nodes; an empty result means a plain decode."""


@dataclass
class SchedulerCounters:
    prompt_tokens: int = 0
    generated_tokens: int = 0
    cached_prompt_tokens: int = 0
    retractions: int = 0
    finished: int = 0
    drafted_tokens: int = 0
    accepted_tokens: int = 0
    verify_steps: int = 0


class Scheduler(Delivery):
    def __init__(self, cfg: SchedulerConfig, kv: KVManager, policy: SchedulePolicy | None = None,
                 eos_token_ids: tuple[int, ...] = (), drafts: DraftSource | None = None) -> None:
        self.cfg = cfg
        self.drafts = drafts
        self.kv = kv
        self.policy = policy or FCFSPolicy()
        self.eos = frozenset(eos_token_ids)
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.counters = SchedulerCounters()
        self.output_reserve = OutputReserve(cfg.schedule_conservativeness, kv, cfg.context_len)
        # KV copies of accepted tree paths, for the engine to apply (take_kv_moves)
        self._kv_moves: list[tuple[int, int]] = []

    # ------------------------------------------------------------ queue management
    def add(self, req: Request) -> None:
        self.waiting.append(req)
        self.counters.prompt_tokens += len(req.prompt_ids)

    def abort(self, rid: str) -> bool:
        """Abort request ``rid`` and its ``n > 1`` children (``rid#i``); whether any was
        found."""
        def match(req: Request) -> bool:
            return req.rid == rid or req.rid.startswith(rid + "#")

        found = False
        for req in [r for r in self.waiting if match(r)]:
            self.waiting.remove(req)
            self._finish(req, "abort")
            found = True
        for req in [r for r in self.running if match(r)]:
            self.running.remove(req)
            req.is_running = False
            self.kv.release(req, cache_it=False)
            self._finish(req, "abort")
            found = True
        return found

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
        # requests mid-prefill (chunked) continue first (``Request.in_prefill``, inlined)
        for req in [r for r in self.running if r.num_computed < len(r.prompt_ids)
                    + len(r.output_ids) - 1] if budget > 0 else []:
            if budget <= 0:
                break
            n = self._reserve_chunk(req, budget)
            if n:
                prefills.append((req, req.num_computed, n))
                budget -= n
        retracted = self.counters.retractions != retracted_before
        self.output_reserve.step(retracted)
        if not retracted:  # no admission while memory is short
            budget = self._admit(prefills, budget, len(decodes))
        items = prefills + decodes
        if not items:
            return None
        if not prefills and not any(d for _, _, d in decodes):  # a plain decode step
            return ScheduledBatch(ForwardMode.DECODE, [r for r, _, _ in decodes],
                                  [1] * len(decodes), [p for _, p, _ in decodes],
                                  drafts=[d for _, _, d in decodes], trees=[None] * len(decodes))
        # a tree verifies only in a VERIFY batch (SpecInfo.tree_mask); beside prefill chunks
        # it verifies its chain of first children instead
        trees = [None] * len(prefills) + [
            d if isinstance(d, DraftTree) and not prefills else None for _, _, d in decodes]
        drafts = [[] for _ in prefills] + [
            (list(d.tokens) if t is not None else d.chain()) if isinstance(d, DraftTree) else d
            for (_, _, d), t in zip(decodes, trees[len(prefills):])]
        ks = {len(d) for d in drafts[len(prefills):]}
        if not prefills:
            mode = ForwardMode.DECODE if ks == {0} else (
                ForwardMode.VERIFY if len(ks) == 1 or any(t is not None for t in trees)
                else ForwardMode.MIXED)
        else:
            mode = ForwardMode.EXTEND if not decodes else ForwardMode.MIXED
        prompt_lp = []
        if any(r.prompt_lp_pending for r, _, _ in prefills):
            prompt_lp = ([self._prompt_span(r, p, n) for r, p, n in prefills]
                         + [None] * len(decodes))
        return ScheduledBatch(mode, [r for r, *_ in items],
                              [n for _, _, n in prefills] + [1 + len(d) for d in
                                                              drafts[len(prefills):]],
                              [p for _, p, _ in items], drafts=drafts, prompt_lp=prompt_lp,
                              trees=trees)

    @staticmethod
    def _prompt_span(req: Request, pre: int, n: int) -> tuple[int, int] | None:
        """The prompt positions of the chunk ``[pre, pre + n)`` whose prompt logprobs are
        still to be computed (those of positions before ``prompt_lp_next`` were)."""
        if not req.prompt_lp_pending:
            return None
        start, end = max(pre, req.prompt_lp_next), min(pre + n, len(req.prompt_ids) - 1)
        return (start, end) if start < end else None

    def _wants_decode(self, req: Request, spec: bool = False) -> bool:
        """In decode, not waiting for a verify result, and not waiting for its last token (a
        length limit already reached by the tokens in flight). With speculation on (``spec``),
        a request whose newest token is still in flight waits for it too: drafts are proposed
        from known tokens, so it verifies one step later instead of decoding one token now."""
        if req.in_prefill or req.awaiting or self._at_length_limit(req, len(req.output_ids)):
            return False
        return not (spec and req.output_ids and req.output_ids[-1] < 0)

    @property
    def _speculating(self) -> bool:
        return bool(self.cfg.num_draft_tokens and self.drafts is not None)

    def _at_length_limit(self, req: Request, n_out: int) -> bool:
        return (n_out >= req.params.max_new_tokens
                or len(req.prompt_ids) + n_out >= self.cfg.context_len)

    def _schedule_decodes(self) -> list[tuple[Request, int, list[int] | DraftTree]]:
        """A step for each decoding request, oldest first: one token, or a verify of its
        drafts when there are some and their KV fits. When pages run out, retract the newest
        running request (possibly the one asking) until the rest fit."""
        spec = self._speculating
        drafts: dict[int, list[int] | DraftTree] = {}
        ctx = self.cfg.context_len  # without speculation, _wants_decode inlined
        wanted = [r for r in self.running if self._wants_decode(r, True)] if spec else [
            r for r in self.running if not r.awaiting and (n := len(r.output_ids))
            < r.params.max_new_tokens and (m := len(r.prompt_ids) + n) < ctx
            and r.num_computed >= m - 1]
        # without drafts, only requests whose pages end at their next position need a reserve
        for req in wanted if spec else self.kv.uncovered(wanted):
            if not req.is_running:  # retracted to make room for an older one
                continue
            d = self._propose(req) if spec else None
            if d and self.kv.reserve(req, req.num_computed + 1 + len(d)):
                drafts[id(req)] = d
                continue
            while req.is_running and not self.kv.reserve(req, req.num_computed + 1):
                self._retract(self.running[-1])
        # retracting takes requests off ``running`` and changes no one else's wish to decode
        if not drafts:
            return [(r, r.num_computed, []) for r in wanted if r.is_running]
        return [(r, r.num_computed, drafts.get(id(r), [])) for r in wanted if r.is_running]

    def _propose(self, req: Request) -> list[int] | DraftTree:
        """Draft tokens for ``req`` (at most k, and never more than its length limits leave
        room for: a verify produces up to ``len(drafts) + 1`` tokens). A tree (at most k
        nodes) stays a tree only for a greedy request: a sampling one verifies its chain."""
        k = self.cfg.num_draft_tokens
        if not self._speculating or (req.output_ids and req.output_ids[-1] < 0):
            return []
        room = min(k, req.params.max_new_tokens - len(req.output_ids) - 1,
                   self.cfg.context_len - req.seq_len - 1)
        if room <= 0:
            return []
        d = self.drafts(req, room)
        if isinstance(d, DraftTree):
            d = d.truncated(room)
            if d.is_chain or not req.params.greedy:
                return d.chain()
            return d
        return list(d)[:room]

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
        if (len(self.running) >= self.cfg.max_running_requests
                or self.kv.page_table.num_free_rows == 0):  # no room: skip the policy's ranking
            return budget
        ordered = self.policy.order(list(self.waiting), self.kv.cached_prefix_len)
        reserve = self.output_reserve
        # the running requests' expected growth (OutputReserve), kept free for them
        future = reserve.total(self.running) if reserve.enabled else 0
        for req in ordered:
            if budget <= 0 or len(self.running) >= self.cfg.max_running_requests:
                break
            if req.awaiting:  # retracted with a verify in flight: its length is unknown
                continue
            if self.kv.page_table.num_free_rows == 0:
                break
            self.kv.admit(req)
            # at least a page of headroom per running request so decodes don't thrash
            headroom = max(len(self.running), future)
            own = reserve.pages(req) if reserve.enabled and self.running else 0
            if own and own + headroom > self.kv.available_pages:
                future = reserve.total(self.running, exact=True)  # the cached total is stale
                headroom = max(len(self.running), future)
                if own + headroom > self.kv.available_pages:
                    self.kv.release(req, cache_it=False)  # its own growth would not fit
                    break
            n = min(req.seq_len - req.num_computed, budget)
            pages = self.kv.pages_needed(req, req.num_computed + n)
            if pages + headroom > self.kv.available_pages:
                fit = (len(req.pages) + self.kv.available_pages - headroom) * self.kv.page_size
                n = min(n, fit - req.num_computed)
            if n <= 0 or not self.kv.reserve(req, req.num_computed + n):
                self.kv.release(req, cache_it=False)
                break
            if reserve.enabled:
                future = reserve.admitted(req)
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
        prefix cache, and append a placeholder for each token a non-verify row samples (a
        verify row's tokens are appended by ``process``; the request awaits them)."""
        batch.rows = [r.row for r in batch.reqs]
        if batch.mode is ForwardMode.DECODE and not batch.prompt_lp:  # one token each
            self.kv.advance_decodes(batch.reqs, batch.prefix_lens)
            batch.out_index = out = []
            for req, samples in zip(batch.reqs, batch.samples):
                out.append(len(req.output_ids) if samples else -1)
                if samples:
                    req.output_ids.append(-(req.row + 1))  # placeholder(req.row)
            return
        batch.out_index = [-1] * len(batch.reqs)
        for req, span in zip(batch.reqs, batch.prompt_lp):
            if span is not None:
                req.prompt_lp_next = span[1]
        for i, (req, pre, ext, samples, drafts) in enumerate(zip(
                batch.reqs, batch.prefix_lens, batch.extend_lens, batch.sampling_rows(),
                batch.drafts)):
            self.kv.advance(req, pre + ext, unverified=len(drafts))
            if drafts:
                batch.out_index[i] = len(req.output_ids)
                req.awaiting = True
                self.counters.drafted_tokens += len(drafts)
                continue
            if ext > 1:  # a prefill chunk, complete or not: share its pages right away
                self.kv.cache_progress(req)
            if samples:
                batch.out_index[i] = len(req.output_ids)
                req.output_ids.append(placeholder(req.row))

    def process(self, batch: ScheduledBatch, tokens: list[list[int]],
                logprobs: list[list] | None,
                prompt_logprobs: dict[int, list] | None = None) -> None:
        """Fill in the tokens ``batch`` produced: ``tokens[j]`` (and ``logprobs[j]``, one
        ``TokenLogprob`` or ``None`` per token) for the ``j``-th sampling request, one token
        for a decode or a prompt's last chunk, 1 to ``k + 1`` for a verify of ``k`` drafts.
        Applies the stop rules token by token (a stop inside an accepted run drops the tokens
        after it). ``prompt_logprobs[i]``: the prompt logprobs request ``i`` of the batch
        computed (delivered before its tokens). A request with ``max_new_tokens == 0``
        finishes ("length") once a chunk reaching its prompt's last position is processed. Commits ``batch``
        first if the caller has not (synchronous use)."""
        if not batch.committed:
            self.commit(batch)
        for i, lps in (prompt_logprobs or {}).items():
            req = batch.reqs[i]
            if not req.finished:
                req.sink(TokenDelta(req.rid, [], None, False, cached_tokens=req.cached_tokens,
                                    prompt_logprobs=lps))
        if logprobs is None and not batch.has_verify:  # one token per sampling request
            self._deliver_one_token_rows(batch, tokens)
            return
        j = 0
        for req, samples, idx, pre, ext, drafts, tree in zip(
                batch.reqs, batch.sampling_rows(), batch.out_index, batch.prefix_lens,
                batch.extend_lens, batch.drafts, batch.trees):
            if not samples:
                if (req.params.max_new_tokens == 0 and pre + ext >= len(req.prompt_ids) - 1
                        and not req.finished):
                    self._finish_prefill_only(req)
                continue
            toks, lps = tokens[j], (logprobs[j] if logprobs is not None else None)
            j += 1
            if drafts:
                req.awaiting = False
                self.counters.verify_steps += 1
                self.counters.accepted_tokens += len(toks) - 1
                req.spec_verify_ct += 1
                req.spec_accepted_tokens += len(toks) - 1
                if not req.finished:
                    del req.output_ids[idx:]  # nothing past a verify's tokens
                    req.output_ids.extend(toks)
                    if req.is_running:  # release the rejected drafts' KV slots
                        if tree is not None:  # the accepted path to consecutive positions
                            self._kv_moves += path_moves(req, pre, tree, toks[:-1],
                                                         self.kv.page_size)
                        self.kv.truncate(req, pre + len(toks))
            elif not req.finished:
                # a request retracted after this batch launched still takes its token
                req.output_ids[idx] = toks[0]
            if req.finished:  # aborted, or stopped one step earlier (its extra decode)
                continue
            self._deliver(req, idx, toks, lps)

    def take_kv_moves(self) -> list[tuple[int, int]]:
        """The ``(source slot, destination slot)`` KV copies of the tree paths accepted by
        the batches processed since the last call (``tree_moves.path_moves``); the caller
        queues them on the device before anything launched later reads the KV (the
        request's next step, a drafter's, a prefix-cache hit, a new owner of a freed page)."""
        moves, self._kv_moves = self._kv_moves, []
        return moves

    def _stop(self, req: Request, n_out: int) -> None:
        """Drop tokens past the last kept one (an in-flight decode's placeholder, or the rest
        of an accepted run) and give the request's KV to the cache, or take it off the queue
        if it was retracted."""
        del req.output_ids[n_out:]
        if req.is_running:
            self.running.remove(req)
            req.is_running = False
            self.kv.truncate(req, min(req.num_computed, req.seq_len))
            self.kv.release(req, cache_it=True)
        elif req in self.waiting:
            self.waiting.remove(req)

    def _finish(self, req: Request, reason: str) -> None:
        req.finish_reason = reason
        req.sink(TokenDelta(req.rid, [], None, True, reason, cached_tokens=req.cached_tokens))
