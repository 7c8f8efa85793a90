"""Translation of OpenAI sampling fields into the engine's ``SamplingParams``."""

from __future__ import annotations

from typing import Any

import anyware
from anyware.server.errors import invalid
from anyware.server.openai_requests import ChatCompletionRequest, CompletionRequest

OPENAI_DEFAULT_TEMPERATURE = 1.0


def build_sampling_params(
    req: CompletionRequest | ChatCompletionRequest, max_new_tokens: int, logprobs: int | None,
    prompt_logprobs: int | None = None,
) -> Any:
    """``anyware.SamplingParams`` for ``req``; an engine-side rejection becomes a 400."""
    kwargs: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "temperature": (
            OPENAI_DEFAULT_TEMPERATURE if req.temperature is None else float(req.temperature)
        ),
        "top_p": 1.0 if req.top_p is None else float(req.top_p),
        "n": req.n,
        "seed": req.seed,
        "stop": tuple(req.stop_list()),
        "presence_penalty": float(req.presence_penalty or 0.0),
        "frequency_penalty": float(req.frequency_penalty or 0.0),
        "logprobs": logprobs,
        "prompt_logprobs": prompt_logprobs,
        "ignore_eos": req.ignore_eos,
        "skip_special_tokens": req.skip_special_tokens,
    }
    if req.top_k is not None:
        kwargs["top_k"] = req.top_k
    if req.min_p is not None:
        kwargs["min_p"] = float(req.min_p)
    if req.repetition_penalty is not None:
        kwargs["repetition_penalty"] = float(req.repetition_penalty)
    if req.stop_token_ids:
        kwargs["stop_token_ids"] = tuple(req.stop_token_ids)
    return make_sampling_params(**kwargs)


def make_sampling_params(**kwargs: Any) -> Any:
    try:
        return anyware.SamplingParams(**kwargs)
    except ValueError as exc:  # anyware.InvalidRequestError names the field
        raise invalid(str(exc)) from None
