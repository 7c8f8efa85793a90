"""Parsing and validation of request bodies into the pydantic models, with OpenAI-style 400s
that name the offending parameter."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from anyware.server.errors import APIError, invalid, unsupported
from anyware.server.openai_requests import ChatCompletionRequest, CompletionRequest
from anyware.server.prompts import USE_STOP_TOKEN_IDS, require_tokenizer
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def parse_body(raw: bytes, model: type[M]) -> M:
    """Decode ``raw`` as JSON and validate it as ``model``; raise :class:`APIError` if either
    step fails."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise invalid(
            f"We could not parse the JSON body of your request ({exc}). The body must be a "
            "JSON object.",
            code="invalid_json",
        ) from None
    if not isinstance(data, dict):
        raise invalid("The request body must be a JSON object.", code="invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _from_validation(exc) from None


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _is_type_tag(str(part)):
            continue  # union member tags such as 'str' or 'list[int]' are noise
        else:
            out += f".{part}" if out else str(part)
    return out


def _is_type_tag(part: str) -> bool:
    return part in {"str", "int", "float", "bool"} or part.startswith(("list[", "dict[")) or (
        part in {"TextPart", "StreamOptions", "ChatMessage"}
    )


def _from_validation(exc: ValidationError) -> APIError:
    errors = exc.errors(include_url=False)
    first = errors[0]
    param = _loc(tuple(first["loc"]))
    if first["type"] == "extra_forbidden":
        return invalid(f"Unrecognized request argument supplied: {param}", param=param)
    if first["type"] == "missing":
        return invalid(f"Missing required parameter: '{param}'.", param=param)
    # A union reports one error per member; say what we expected once.
    bad = [e for e in errors if _loc(tuple(e["loc"])) == param]
    msg = first["msg"]
    if len(bad) > 1:
        msg = "; ".join(dict.fromkeys(e["msg"] for e in bad))
    value = first.get("input")
    shown = json.dumps(value)[:80] if _jsonable(value) else repr(value)[:80]
    return invalid(f"Invalid value for '{param}': {msg} (got {shown}).", param=param)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def check_model(requested: str, served: str) -> None:
    if requested != served:
        raise APIError(
            f"The model '{requested}' does not exist. This server serves '{served}'.",
            status=404,
            param="model",
            code="model_not_found",
        )


def check_unsupported_common(req: CompletionRequest | ChatCompletionRequest) -> None:
    if req.logit_bias:
        raise unsupported("logit_bias")


def check_unsupported_completion(req: CompletionRequest) -> None:
    check_unsupported_common(req)
    if req.best_of is not None and req.best_of != req.n:
        raise unsupported("best_of", "Use 'n' for several completions.")
    if req.suffix:
        raise unsupported("suffix")
    if req.max_tokens == 0 and not req.echo:
        raise invalid("'max_tokens' 0 generates nothing; it is allowed only with 'echo': true "
                      "(the prompt back, with its logprobs when 'logprobs' is set). Use "
                      "max_tokens >= 1 otherwise.", param="max_tokens")


def check_unsupported_chat(req: ChatCompletionRequest) -> None:
    check_unsupported_common(req)
    for name in ("tools", "functions", "function_call", "audio", "prediction",
                 "web_search_options", "reasoning_effort"):
        if getattr(req, name) is not None:
            raise unsupported(name)
    if req.tool_choice not in (None, "none"):
        raise unsupported("tool_choice")
    if req.modalities is not None and req.modalities != ["text"]:
        raise unsupported("modalities", "Only text output is available.")
    fmt = req.response_format
    if fmt is not None and not (isinstance(fmt, dict) and fmt.get("type") == "text"):
        raise unsupported("response_format", "Only {'type': 'text'} is available.")
    if req.top_logprobs is not None and not req.logprobs:
        raise invalid("'top_logprobs' requires 'logprobs' to be true.", param="top_logprobs")
    for i, m in enumerate(req.messages):
        if m.tool_calls is not None:
            raise unsupported(f"messages[{i}].tool_calls")
        if isinstance(m.content, list):
            for j, part in enumerate(m.content):
                if part.type != "text" or part.text is None:
                    raise unsupported(
                        f"messages[{i}].content[{j}]",
                        f"Content part type '{part.type}' is not available; only text parts.",
                    )


def check_tokenizer_options(tokenizer: Any, req: CompletionRequest) -> None:
    """Completion options that need a tokenizer, checked before any work is done (a text
    prompt is checked where it is encoded)."""
    if req.logprobs is not None:
        require_tokenizer(
            tokenizer, "logprobs cannot be returned as token strings",
            "Leave out 'logprobs', or use POST /generate with 'input_ids' and "
            "'sampling_params': {'logprobs': N}, which returns logprobs by token id.",
            "logprobs",
        )
    if req.echo:
        require_tokenizer(
            tokenizer, "the prompt cannot be echoed as text",
            "Leave out 'echo' (usage.prompt_tokens counts the prompt tokens).", "echo",
        )
    if req.stop:
        require_tokenizer(tokenizer, "stop strings cannot be matched", USE_STOP_TOKEN_IDS,
                          "stop")
