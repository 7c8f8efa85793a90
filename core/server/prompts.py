"""Prompt handling on the HTTP side of the server: chat templates, tokenization, and the checks
that a prompt fits the model (vocabulary and context length). Runs in a worker thread, never on
the engine's scheduler loop."""

from __future__ import annotations

from typing import Any

from anyware.server.errors import invalid
from anyware.server.openai_requests import ChatMessage

TOKENIZER_REQUIRED = "tokenizer_required"


def require_tokenizer(tokenizer: Any, cannot: str, instead: str, param: str | None) -> None:
    """A 400 naming ``param`` when the model has no tokenizer (a shape preset, or a model
    directory without tokenizer files): ``cannot`` says what is impossible without one,
    ``instead`` what the client can do."""
    if tokenizer is None:
        raise invalid(
            f"This model has no tokenizer (a shape preset, or a model directory without "
            f"tokenizer files), so {cannot}. {instead}",
            param=param,
            code=TOKENIZER_REQUIRED,
        )


SEND_TOKEN_IDS = (
    "Send token ids instead ('prompt': [1, 2, 3] on /v1/completions, 'input_ids' on "
    "/generate), or serve a model directory that includes its tokenizer."
)
USE_STOP_TOKEN_IDS = "Use 'stop_token_ids' (token ids) instead."


def flatten_content(content: Any) -> str:
    """Message content as one string (text parts joined by newlines)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(part.text or "" for part in content)


def render_chat(
    tokenizer: Any,
    messages: list[ChatMessage],
    *,
    add_generation_prompt: bool = True,
    continue_final_message: bool = False,
) -> str:
    """The prompt text of ``messages`` under the tokenizer's chat template."""
    require_tokenizer(
        tokenizer, "chat messages cannot be turned into tokens",
        "Use /v1/completions with token ids ('prompt': [1, 2, 3]), or serve a model directory "
        "that includes its tokenizer and chat template.", "messages",
    )
    if not getattr(tokenizer, "chat_template", None):
        raise invalid(
            "This model's tokenizer has no chat template; use /v1/completions instead.",
            param="messages",
        )
    msgs: list[dict[str, Any]] = []
    for m in messages:
        entry: dict[str, Any] = {"role": m.role, "content": flatten_content(m.content)}
        if m.name is not None:
            entry["name"] = m.name
        msgs.append(entry)
    try:
        kwargs: dict[str, Any] = {"add_generation_prompt": add_generation_prompt}
        if continue_final_message:
            kwargs["continue_final_message"] = True
        return tokenizer.apply_chat_template(msgs, tokenize=False, **kwargs)
    except Exception as exc:  # a template's raise_exception, e.g. roles must alternate
        raise invalid(f"The chat template rejected the messages: {exc}", param="messages") from None


def encode_text(
    tokenizer: Any, text: str, *, add_special_tokens: bool, param: str = "prompt"
) -> list[int]:
    require_tokenizer(tokenizer, "text prompts cannot be encoded", SEND_TOKEN_IDS, param)
    return list(tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])


def normalize_completion_prompt(prompt: Any) -> list[str | list[int]]:
    """OpenAI's four prompt shapes as a list of single prompts (text or token ids)."""
    if isinstance(prompt, str):
        prompts: list[str | list[int]] = [prompt]
    elif len(prompt) == 0:
        raise invalid("The prompt must not be empty.", param="prompt")
    elif isinstance(prompt[0], int):
        prompts = [list(prompt)]
    else:
        prompts = list(prompt)
    for i, p in enumerate(prompts):
        if isinstance(p, list) and not p:
            raise invalid(f"Prompt {i} is an empty list of token ids.", param="prompt")
    return prompts


def check_token_ids(ids: list[int], vocab_size: int, param: str) -> None:
    for i, t in enumerate(ids):
        if not 0 <= t < vocab_size:
            raise invalid(
                f"Token id {t} at position {i} is out of the vocabulary (valid ids are 0 to "
                f"{vocab_size - 1}).",
                param=param,
                code="invalid_token_id",
            )


def check_fits(prompt_len: int, max_new_tokens: int | None, context_len: int, param: str) -> int:
    """Check that the prompt (and the requested completion) fit the context; return the number
    of new tokens to ask for (``max_new_tokens`` or, when ``None``, what the context leaves)."""
    if prompt_len == 0:
        raise invalid("The prompt must not be empty.", param=param)
    if prompt_len >= context_len:
        raise invalid(
            f"This model's maximum context length is {context_len} tokens. However, your "
            f"prompt has {prompt_len} tokens, which leaves no room for a completion.",
            param=param,
            code="context_length_exceeded",
        )
    room = context_len - prompt_len
    if max_new_tokens is None:
        return room
    if max_new_tokens > room:
        raise invalid(
            f"This model's maximum context length is {context_len} tokens. However, you "
            f"requested {prompt_len + max_new_tokens} tokens ({prompt_len} in the prompt, "
            f"{max_new_tokens} in the completion). Please reduce the prompt or max_tokens.",
            param="max_tokens",
            code="context_length_exceeded",
        )
    return max_new_tokens
