"""Delivery: the stop rules for sampled tokens and the `TokenDelta`s sent to each request's
sink (the results half of :class:`anyware.scheduler.Scheduler`, as a mixin).

``_deliver_one_token_rows`` is ``Scheduler.process`` for a batch whose sampling requests each
produce one token without logprobs (decodes and prompts' last chunks, no verify rows): the
common many-request step, with the stop checks inlined; a token that may stop its request
goes through ``_deliver`` as before.
"""

from __future__ import annotations

from anyware.request import ScheduledBatch, TokenDelta
from anyware.request.request import Request


class Delivery:
    """Needs ``eos``, ``cfg.context_len``, ``counters``, ``_stop`` and ``_at_length_limit``
    (:class:`anyware.scheduler.Scheduler`)."""

    def _deliver_one_token_rows(self, batch: ScheduledBatch, tokens: list[list[int]]) -> None:
        eos, ctx = self.eos, self.cfg.context_len
        j = sent = 0
        for req, samples, idx, pre, ext in zip(batch.reqs, batch.samples, batch.out_index,
                                               batch.prefix_lens, batch.extend_lens):
            if not samples:
                if (req.params.max_new_tokens == 0 and pre + ext >= len(req.prompt_ids) - 1
                        and req.finish_reason is None):
                    self._finish_prefill_only(req)
                continue
            toks = tokens[j]
            j += 1
            if req.finish_reason is not None:  # aborted, or stopped one step earlier
                continue
            tok = req.output_ids[idx] = toks[0]
            p, n_out = req.params, idx + 1
            if (n_out < p.max_new_tokens and len(req.prompt_ids) + n_out < ctx
                    and (n_out < p.min_new_tokens or (
                        tok not in p.stop_token_ids and (p.ignore_eos or tok not in eos)))):
                sent += 1
                req.sink(TokenDelta(req.rid, toks, None, False, cached_tokens=req.cached_tokens,
                                    spec_verify_ct=req.spec_verify_ct,
                                    spec_accepted_tokens=req.spec_accepted_tokens))
            else:  # it may stop here
                self._deliver(req, idx, toks, None)
        self.counters.generated_tokens += sent

    def _deliver(self, req: Request, idx: int, toks: list[int], lps: list | None) -> None:
        """Stop checks for the tokens now at ``output_ids[idx:idx + len(toks)]``; send them."""
        if len(toks) == 1:  # the common case
            reason = self._stop_reason(req, toks[0], idx + 1)
        else:
            for n, tok in enumerate(toks):
                reason = self._stop_reason(req, tok, idx + n + 1)
                if reason is not None:
                    toks = toks[: n + 1]
                    break
        self.counters.generated_tokens += len(toks)
        # a request asks for logprobs at every position or at none
        lp = None if lps is None or lps[0] is None else lps[: len(toks)]
        if reason is None:
            req.sink(TokenDelta(req.rid, toks, lp, False, cached_tokens=req.cached_tokens,
                                spec_verify_ct=req.spec_verify_ct,
                                spec_accepted_tokens=req.spec_accepted_tokens))
            return
        self._stop(req, idx + len(toks))
        req.finish_reason, req.stop_reason = reason
        self.counters.finished += 1
        req.sink(TokenDelta(req.rid, toks, lp, True, req.finish_reason, req.stop_reason,
                            cached_tokens=req.cached_tokens, spec_verify_ct=req.spec_verify_ct,
                            spec_accepted_tokens=req.spec_accepted_tokens))

    def _finish_prefill_only(self, req: Request) -> None:
        """A request that generates no tokens (``max_new_tokens == 0``: prompt logprobs only)
        is done once its whole prompt has been through the model."""
        self._stop(req, 0)
        req.finish_reason, req.stop_reason = "length", None
        self.counters.finished += 1
        req.sink(TokenDelta(req.rid, [], None, True, "length", cached_tokens=req.cached_tokens))

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
