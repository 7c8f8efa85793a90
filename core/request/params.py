"""`SamplingParams`: per-request generation settings, validated on construction."""

from __future__ import annotations

from dataclasses import dataclass, field

from anyware.request.errors import InvalidRequestError

MAX_TOP_LOGPROBS = 20


@dataclass(frozen=True)
class SamplingParams:
    """See docs/engine-api.md. ``temperature == 0`` means greedy."""

    max_new_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    seed: int | None = None
    n: int = 1
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    logprobs: int | None = None
    prompt_logprobs: int | None = None
    skip_special_tokens: bool = True
    cache_salt: str | None = None
    min_new_tokens: int = field(default=0)

    def __post_init__(self) -> None:
        def bad(param: str, why: str) -> None:
            raise InvalidRequestError(f"{param} {why}", param=param)

        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        object.__setattr__(self, "stop", tuple(self.stop or ()))
        object.__setattr__(self, "stop_token_ids", tuple(self.stop_token_ids or ()))
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 0:
            bad("max_new_tokens", f"must be a non-negative integer (0: prefill only, for "
                f"prompt_logprobs), got {self.max_new_tokens!r}")
        if not 0 <= self.temperature <= 100:
            bad("temperature", f"must be in [0, 100], got {self.temperature}")
        if not 0 < self.top_p <= 1:
            bad("top_p", f"must be in (0, 1], got {self.top_p}")
        if self.top_k == 0 or self.top_k < -1:
            bad("top_k", f"must be -1 (disabled) or >= 1, got {self.top_k}")
        if not 0 <= self.min_p < 1:
            bad("min_p", f"must be in [0, 1), got {self.min_p}")
        if self.repetition_penalty <= 0:
            bad("repetition_penalty", f"must be > 0, got {self.repetition_penalty}")
        for name in ("frequency_penalty", "presence_penalty"):
            if not -2 <= getattr(self, name) <= 2:
                bad(name, f"must be in [-2, 2], got {getattr(self, name)}")
        if not isinstance(self.n, int) or not 1 <= self.n <= 128:
            bad("n", f"must be an integer in [1, 128], got {self.n!r}")
        if self.logprobs is not None and not 0 <= self.logprobs <= MAX_TOP_LOGPROBS:
            bad("logprobs", f"must be in [0, {MAX_TOP_LOGPROBS}], got {self.logprobs}")
        if self.prompt_logprobs is not None and not (
                isinstance(self.prompt_logprobs, int)
                and 0 <= self.prompt_logprobs <= MAX_TOP_LOGPROBS):
            bad("prompt_logprobs", f"must be an integer in [0, {MAX_TOP_LOGPROBS}] (the number of "
                f"top logprobs per prompt position), got {self.prompt_logprobs!r}")
        if any(not s for s in self.stop):
            bad("stop", "must not contain empty strings")
        if self.seed is not None and not isinstance(self.seed, int):
            bad("seed", f"must be an integer, got {self.seed!r}")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            bad("min_new_tokens", "must be in [0, max_new_tokens]")
        # computed once (the sampler asks every step); set here so that every instance's
        # attributes stay in the same order (a shared-key dict: fast attribute reads)
        object.__setattr__(self, "_greedy", self.temperature == 0 or self.top_k == 1)
        object.__setattr__(self, "_uses_penalties", self.repetition_penalty != 1.0
                           or self.frequency_penalty != 0.0 or self.presence_penalty != 0.0)

    @property
    def greedy(self) -> bool:
        return self._greedy

    @property
    def uses_penalties(self) -> bool:
        return self._uses_penalties
