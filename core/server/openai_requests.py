"""Pydantic models of the OpenAI request bodies this server accepts.

Types are strict (``"5"`` is not an integer) and unknown fields are rejected, as the OpenAI API
does. OpenAI parameters this server recognises but does not implement are declared as
``Any`` fields so that :func:`anyware.server.request_checks.check_unsupported` can name them in
a 400 answer instead of an "unrecognized argument" one. An explicit ``null`` for an optional
field means its default, as the OpenAI API and vLLM accept (:class:`RequestModel`). A few widely used extensions (``top_k``,
``min_p``, ``repetition_penalty``, ``ignore_eos``, ``stop_token_ids``, ``skip_special_tokens``)
are accepted on both endpoints.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_N = 128
MAX_STOP = 4
MAX_TOP_LOGPROBS_CHAT = 20
MAX_LOGPROBS_COMPLETIONS = 5


# SGLang extension fields that sglang-router (docs/scale-out.md) writes into every request it
# forwards, at these values, which ask for nothing: accepted (and dropped) when they hold them;
# any other value stays an unrecognized argument (a 400 naming it).
ROUTER_NOOP_FIELDS: dict[str, Any] = {
    "no_stop_trim": False, "return_hidden_states": False, "continue_final_message": False,
    "separate_reasoning": True, "stream_reasoning": True, "return_text_in_logprobs": False,
    "log_metrics": True, "background": False, "no_logs": False, "return_bytes": False,
    "return_entropy": False,
}


class RequestModel(BaseModel):
    """A request body: strict types, unknown fields rejected, and ``null`` for an optional field
    is the same as leaving it out (a required field stays required: ``"model": null`` is a type
    error naming ``model``; an unknown field is rejected, null or not, except the no-op
    values of :data:`ROUTER_NOOP_FIELDS`)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        return {
            k: v for k, v in data.items()
            if (v is not None or k not in fields or fields[k].is_required())
            and not (k not in fields and k in ROUTER_NOOP_FIELDS
                     and v is ROUTER_NOOP_FIELDS[k])
        }


class StreamOptions(RequestModel):
    include_usage: bool = False
    continuous_usage_stats: bool = False


class _SamplingFields(RequestModel):
    """Fields shared by /v1/completions and /v1/chat/completions."""

    model: str
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1, le=MAX_N)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    seed: int | None = None
    user: str | None = None
    logit_bias: dict[str, Any] | None = None
    # Extensions (not OpenAI, common across servers).
    top_k: int | None = Field(default=None, ge=-1)
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(default=None, gt=0.0)
    ignore_eos: bool = False
    stop_token_ids: list[int] | None = None
    skip_special_tokens: bool = True

    @field_validator("stop")
    @classmethod
    def _stop(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, list):
            if len(v) > MAX_STOP:
                raise ValueError(f"at most {MAX_STOP} stop sequences are allowed")
            if any(s == "" for s in v):
                raise ValueError("stop sequences must not be empty")
        elif v == "":
            raise ValueError("stop sequences must not be empty")
        return v

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)


class CompletionRequest(_SamplingFields):
    """POST /v1/completions."""

    prompt: str | list[str] | list[int] | list[list[int]]
    # 0 is allowed with echo (the prompt and its logprobs only), as OpenAI does
    max_tokens: int | None = Field(default=None, ge=0)
    logprobs: int | None = Field(default=None, ge=0, le=MAX_LOGPROBS_COMPLETIONS)
    echo: bool = False
    # Recognised, not implemented (see request_checks).
    best_of: int | None = None
    suffix: str | None = None


class TextPart(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    """One message. Extra fields (``refusal``, ``annotations`` ...) are ignored."""

    model_config = ConfigDict(strict=True, extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: Any = None
    tool_call_id: str | None = None


class ChatCompletionRequest(_SamplingFields):
    """POST /v1/chat/completions."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS_CHAT)
    metadata: dict[str, Any] | None = None
    store: bool | None = None
    service_tier: str | None = None
    # Recognised, not implemented (see request_checks).
    tools: Any = None
    tool_choice: Any = None
    parallel_tool_calls: Any = None
    functions: Any = None
    function_call: Any = None
    response_format: Any = None
    modalities: Any = None
    audio: Any = None
    prediction: Any = None
    reasoning_effort: Any = None
    web_search_options: Any = None

    def max_new_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else (
            self.max_tokens
        )
