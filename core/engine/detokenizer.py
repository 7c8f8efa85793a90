"""Front-end output assembly: incremental detokenization, stop strings, logprobs, usage.

Runs in the caller's thread (or event loop), never on the engine loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from anyware.engine.outputs import CompletionOutput, RequestOutput, Usage
from anyware.request.delta import TokenDelta, TokenLogprob
from anyware.request.params import SamplingParams


@dataclass
class _Seq:
    """One completion's text state. Offsets follow the usual incremental scheme: the text of
    ``ids[prefix:read]`` was already emitted; decoding ``ids[prefix:]`` and stripping that
    part yields the new text without breaking multi-token characters."""

    ids: list[int] = field(default_factory=list)
    text: str = ""  # all text so far (including held-back tail)
    emitted: int = 0  # chars of ``text`` already given to the caller
    prefix: int = 0
    read: int = 0
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finished: bool = False
    finish_reason: str | None = None
    stop_reason: str | int | None = None
    cached_tokens: int = 0
    spec_verify_ct: int = 0
    spec_accepted_tokens: int = 0


class OutputAssembler:
    """Collects `TokenDelta`s of one request's ``n`` completions into `RequestOutput`s."""

    def __init__(self, request_id: str, prompt_ids: list[int], params: SamplingParams,
                 tokenizer, child_ids: list[str]) -> None:
        self.request_id = request_id
        self.prompt_ids = prompt_ids
        self.params = params
        self.tokenizer = tokenizer
        self.index = {cid: i for i, cid in enumerate(child_ids)}
        self.seqs = [_Seq() for _ in child_ids]
        self.hold = max((len(s) for s in params.stop), default=1) - 1
        self.error: str | None = None
        self._prompt_lps: list[TokenLogprob] = []  # prompt tokens 1.. (from the first child)
        self._prompt_sent = False
        # a fast (Rust) tokenizer decodes the same text without the Python wrapper's
        # per-call overhead, unless the wrapper would post-process it (space clean-up)
        fast = getattr(tokenizer, "backend_tokenizer", None)
        self._fast = None if getattr(tokenizer, "clean_up_tokenization_spaces", False) else fast

    @property
    def finished(self) -> bool:
        return all(s.finished for s in self.seqs)

    def _decode(self, ids: list[int]) -> str:
        if self._fast is not None:
            return self._fast.decode(ids, skip_special_tokens=self.params.skip_special_tokens)
        return self.tokenizer.decode(ids, skip_special_tokens=self.params.skip_special_tokens)

    def _append_text(self, seq: _Seq) -> None:
        if self.tokenizer is None:
            return
        new = self._decode(seq.ids[seq.prefix :])
        if new.endswith("\ufffd"):  # an incomplete character: wait for more tokens
            return
        old = self._decode(seq.ids[seq.prefix : seq.read])
        seq.text += new[len(old):]
        seq.prefix, seq.read = seq.read, len(seq.ids)

    def _check_stop(self, seq: _Seq, start: int) -> str | None:
        """Find a stop string in the new text; truncate there. Returns the string."""
        best = None
        for s in self.params.stop:
            i = seq.text.find(s, max(0, start - len(s) + 1))
            if i >= 0 and (best is None or i < best[0]):
                best = (i, s)
        if best is None:
            return None
        seq.text = seq.text[: best[0]]
        return best[1]

    def add(self, delta: TokenDelta) -> list[str]:
        """Apply one delta. Returns child ids the engine should abort (stop string hit)."""
        seq = self.seqs[self.index[delta.request_id]]
        if seq.finished:
            return []
        to_abort = []
        if delta.error:
            self.error = delta.error
        seq.cached_tokens = delta.cached_tokens
        if delta.spec_verify_ct:  # cumulative; deltas that do not carry them send 0
            seq.spec_verify_ct = delta.spec_verify_ct
            seq.spec_accepted_tokens = delta.spec_accepted_tokens
        if delta.prompt_logprobs:
            self._prompt_lps.extend(delta.prompt_logprobs)
        seq.ids.extend(delta.token_ids)
        if delta.logprobs:
            seq.logprobs.extend(delta.logprobs)
        before = len(seq.text)
        if delta.token_ids:
            self._append_text(seq)
        if delta.finished and self.tokenizer is not None and seq.read < len(seq.ids):
            # flush text held back by an incomplete character
            old = self._decode(seq.ids[seq.prefix : seq.read])
            seq.text += self._decode(seq.ids[seq.prefix :])[len(old):]
            seq.prefix = seq.read = len(seq.ids)
        stop = self._check_stop(seq, before) if self.params.stop else None
        if stop is not None:
            seq.finished, seq.finish_reason, seq.stop_reason = True, "stop", stop
            if not delta.finished:
                to_abort.append(delta.request_id)
        elif delta.finished:
            seq.finished, seq.finish_reason, seq.stop_reason = True, delta.finish_reason, delta.stop_reason
        return to_abort

    def _take(self, seq: _Seq, final: bool) -> str:
        limit = len(seq.text) if (final or seq.finished) else max(seq.emitted, len(seq.text) - self.hold)
        out = seq.text[seq.emitted : limit]
        seq.emitted = max(seq.emitted, limit)
        return out

    def prompt_logprobs(self) -> list[TokenLogprob | None] | None:
        """All prompt logprobs (first entry ``None``) once known; ``None`` before that or
        when not asked for."""
        if self.params.prompt_logprobs is None:
            return None
        if len(self._prompt_lps) < len(self.prompt_ids) - 1:
            return None
        return [None, *self._prompt_lps]

    def delta_output(self, sent: list[tuple[int, int]]) -> RequestOutput:
        """The new part since the last call (``sent`` holds per-child (ids, logprobs) counts)."""
        outs = []
        for i, seq in enumerate(self.seqs):
            n_ids, n_lp = sent[i]
            outs.append(CompletionOutput(
                i, self._take(seq, False), seq.ids[n_ids:],
                seq.logprobs[n_lp:] if self.params.logprobs is not None else None,
                seq.finish_reason if seq.finished else None,
                seq.stop_reason if seq.finished else None,
                seq.spec_verify_ct, seq.spec_accepted_tokens))
            sent[i] = (len(seq.ids), len(seq.logprobs))
        prompt = None if self._prompt_sent else self.prompt_logprobs()
        self._prompt_sent = self._prompt_sent or prompt is not None
        return RequestOutput(self.request_id, self.prompt_ids, outs, self.finished, self.usage(),
                             prompt)

    def final_output(self) -> RequestOutput:
        outs = [CompletionOutput(i, s.text, list(s.ids),
                                 list(s.logprobs) if self.params.logprobs is not None else None,
                                 s.finish_reason, s.stop_reason, s.spec_verify_ct,
                                 s.spec_accepted_tokens) for i, s in enumerate(self.seqs)]
        return RequestOutput(self.request_id, self.prompt_ids, outs, self.finished, self.usage(),
                             self.prompt_logprobs())

    def usage(self) -> Usage:
        return Usage(len(self.prompt_ids), sum(len(s.ids) for s in self.seqs),
                     max((s.cached_tokens for s in self.seqs), default=0))
