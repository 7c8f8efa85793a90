"""What the core tells the front end about a request after each step: `TokenDelta`, with
per-token `TokenLogprob`s."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TokenLogprob:
    token_id: int
    logprob: float
    top: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class TokenDelta:
    """One request's new tokens from one engine step (core -> front end).

    ``prompt_logprobs``: with ``SamplingParams.prompt_logprobs``, the logprobs of the prompt
    tokens this step computed, in order, continuing those of earlier deltas (the first prompt
    token has none: entry ``j`` overall is prompt token ``j + 1``)."""

    request_id: str
    token_ids: list[int]
    logprobs: list[TokenLogprob] | None
    finished: bool
    finish_reason: str | None = None
    stop_reason: str | int | None = None
    cached_tokens: int = 0
    error: str | None = None
    prompt_logprobs: list[TokenLogprob] | None = None  # the next prompt positions' logprobs
    # speculative decoding, since the request started: verify steps, drafts they kept
    spec_verify_ct: int = 0
    spec_accepted_tokens: int = 0
