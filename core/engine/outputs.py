"""What the engine returns: `RequestOutput`, `CompletionOutput`, `Usage`, `EngineStats`
(a token's logprobs are :class:`anyware.request.TokenLogprob`)."""

from __future__ import annotations

from dataclasses import dataclass

from anyware.request.delta import TokenLogprob


@dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    logprobs: list[TokenLogprob] | None = None
    finish_reason: str | None = None
    stop_reason: str | int | None = None
    # speculative decoding, since the request started (0 without): verify steps, and the
    # draft tokens they kept
    spec_verify_ct: int = 0
    spec_accepted_tokens: int = 0


@dataclass
class RequestOutput:
    """``prompt_logprobs`` (with ``SamplingParams.prompt_logprobs``): one entry per prompt
    token, the first ``None`` (nothing precedes it); set once all of them are known, and in a
    stream only on the first output after that."""

    request_id: str
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    finished: bool
    usage: Usage
    prompt_logprobs: list[TokenLogprob | None] | None = None


@dataclass
class EngineStats:
    running: int
    waiting: int
    kv_pages_used: int
    kv_pages_total: int
    prompt_tokens: int
    generated_tokens: int
    cached_prompt_tokens: int
    evicted_pages: int
    cached_pages: int = 0
    retractions: int = 0
    drafted_tokens: int = 0  # speculative decoding: draft tokens verified
    accepted_tokens: int = 0  # of which the target kept
    verify_steps: int = 0  # request-steps that verified drafts
    spec_paused_steps: int = 0  # decode steps the off-switch ran without drafts
    spec_switch_offs: int = 0  # times it paused speculation (for a batch-size bucket)
    spec_switch_ons: int = 0  # times it resumed

    @property
    def acceptance_rate(self) -> float:
        """Accepted / drafted tokens (0 without speculation)."""
        return self.accepted_tokens / self.drafted_tokens if self.drafted_tokens else 0.0

    @property
    def mean_acceptance_length(self) -> float:
        """Tokens a verify step produced on average: accepted drafts plus the target's own
        (between 1 and k + 1; 0 without speculation)."""
        return (self.accepted_tokens + self.verify_steps) / self.verify_steps if self.verify_steps else 0.0

    @property
    def kv_usage(self) -> float:
        return self.kv_pages_used / max(self.kv_pages_total, 1)

    @property
    def prefix_hit_rate(self) -> float:
        return self.cached_prompt_tokens / max(self.prompt_tokens, 1)
