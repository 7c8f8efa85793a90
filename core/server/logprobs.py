"""Engine ``TokenLogprob`` lists in the two OpenAI logprob shapes."""

from __future__ import annotations

import math
from typing import Any

from anyware.server.openai_responses import (
    ChatLogprobs,
    ChatTokenLogprob,
    CompletionLogprobs,
    TopLogprob,
)


class TokenText:
    """Text of single token ids, memoized (the tokenizer is read-only, so this is safe to share
    between requests)."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._cache: dict[int, str] = {}

    def __call__(self, token_id: int) -> str:
        text = self._cache.get(token_id)
        if text is None:
            text = self._tokenizer.decode([token_id], skip_special_tokens=False)
            self._cache[token_id] = text
        return text


def _finite(x: float) -> float:
    return x if math.isfinite(x) else -9999.0


def chat_logprobs(entries: list[Any], text_of: TokenText) -> ChatLogprobs:
    content = []
    for e in entries:
        tok = text_of(e.token_id)
        content.append(
            ChatTokenLogprob(
                token=tok,
                logprob=_finite(e.logprob),
                bytes=list(tok.encode("utf-8")),
                top_logprobs=[
                    TopLogprob(token=(t := text_of(tid)), logprob=_finite(lp),
                               bytes=list(t.encode("utf-8")))
                    for tid, lp in (e.top or ())
                ],
            )
        )
    return ChatLogprobs(content=content)


def completion_logprobs(
    entries: list[Any], text_of: TokenText, offset: int, with_top: bool
) -> CompletionLogprobs:
    """``offset`` is the text offset of the first token (the length of what came before)."""
    out = CompletionLogprobs()
    for e in entries:
        tok = text_of(e.token_id)
        out.tokens.append(tok)
        out.token_logprobs.append(_finite(e.logprob))
        if with_top:
            top: dict[str, float] = {}
            for tid, lp in e.top or ():
                top.setdefault(text_of(tid), _finite(lp))
            out.top_logprobs.append(top)
        else:
            out.top_logprobs.append(None)
        out.text_offset.append(offset)
        offset += len(tok)
    return out


def echo_logprobs(prompt_ids: list[int], entries: list[Any], text_of: TokenText,
                  with_top: bool) -> CompletionLogprobs:
    """The prompt part of an echoed completion's logprobs: one entry per prompt token, the
    first with ``null`` logprob and top logprobs (nothing precedes it). ``entries``: the
    engine's ``prompt_logprobs`` (first ``None``). Text offsets count the token strings from 0."""
    out = CompletionLogprobs()
    offset = 0
    for tid, e in zip(prompt_ids, entries):
        tok = text_of(tid)
        out.tokens.append(tok)
        out.text_offset.append(offset)
        offset += len(tok)
        if e is None:
            out.token_logprobs.append(None)
            out.top_logprobs.append(None)
            continue
        out.token_logprobs.append(_finite(e.logprob))
        top: dict[str, float] | None = None
        if with_top:
            top = {}
            for t, lp in e.top or ():
                top.setdefault(text_of(t), _finite(lp))
        out.top_logprobs.append(top)
    return out


def joined(first: CompletionLogprobs, second: CompletionLogprobs) -> CompletionLogprobs:
    """``first``'s entries followed by ``second``'s."""
    return CompletionLogprobs(tokens=first.tokens + second.tokens,
                              token_logprobs=first.token_logprobs + second.token_logprobs,
                              top_logprobs=first.top_logprobs + second.top_logprobs,
                              text_offset=first.text_offset + second.text_offset)
