"""POST /tokenize and /detokenize (and their /v1/ aliases), with vLLM's request and response
fields, and GET /tokenizer_info, which lm-eval's remote-tokenizer check reads.

/tokenize takes ``{"prompt": str, "add_special_tokens": true}`` or ``{"messages": [...],
"add_generation_prompt": true, "continue_final_message": false, "add_special_tokens": false}``
(``"return_token_strs": true`` adds the token strings; ``"model"`` is optional and, when given,
must name the served model) and answers ``{"count", "max_model_len", "tokens", "token_strs"}``.
/detokenize takes ``{"tokens": [int]}`` and answers ``{"prompt": str}``."""

from __future__ import annotations

import asyncio
from typing import Any

from anyware.server.errors import invalid
from anyware.server.openai_requests import ChatMessage, RequestModel
from anyware.server.prompts import check_token_ids, encode_text, render_chat, require_tokenizer
from anyware.server.request_checks import check_model, parse_body
from anyware.server.state import ServerState
from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse

NO_TOKENIZER_HINT = "Work with token ids directly (/v1/completions 'prompt': [ids], /generate)."


class TokenizeRequest(RequestModel):
    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = Field(default=None, min_length=1)
    add_special_tokens: bool | None = None  # default: True for a prompt, False for messages
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    return_token_strs: bool = False


class DetokenizeRequest(RequestModel):
    model: str | None = None
    tokens: list[int]


def _tokenize(state: ServerState, req: TokenizeRequest) -> list[int]:
    if (req.prompt is None) == (req.messages is None):
        raise invalid("Give exactly one of 'prompt' and 'messages'.", param="prompt")
    if req.prompt is not None:
        special = True if req.add_special_tokens is None else req.add_special_tokens
        return encode_text(state.tokenizer, req.prompt, add_special_tokens=special)
    if req.add_generation_prompt and req.continue_final_message:
        raise invalid("'add_generation_prompt' and 'continue_final_message' cannot both be true.",
                      param="continue_final_message")
    assert req.messages is not None
    text = render_chat(state.tokenizer, req.messages,
                       add_generation_prompt=req.add_generation_prompt,
                       continue_final_message=req.continue_final_message)
    return encode_text(state.tokenizer, text, add_special_tokens=bool(req.add_special_tokens),
                       param="messages")


async def tokenize(state: ServerState, request: Request) -> JSONResponse:
    req = parse_body(await request.body(), TokenizeRequest)
    if req.model is not None:
        check_model(req.model, state.served_model_name)
    ids = await asyncio.to_thread(_tokenize, state, req)
    body: dict[str, Any] = {
        "count": len(ids), "max_model_len": state.context_len, "tokens": ids, "token_strs": None,
    }
    if req.return_token_strs:
        body["token_strs"] = state.tokenizer.convert_ids_to_tokens(ids)
    return JSONResponse(body)


async def detokenize(state: ServerState, request: Request) -> JSONResponse:
    req = parse_body(await request.body(), DetokenizeRequest)
    if req.model is not None:
        check_model(req.model, state.served_model_name)
    require_tokenizer(state.tokenizer, "token ids cannot be turned into text",
                      NO_TOKENIZER_HINT, "tokens")
    check_token_ids(req.tokens, state.vocab_size, "tokens")
    text = await asyncio.to_thread(state.tokenizer.decode, req.tokens)
    return JSONResponse({"prompt": text})


def tokenizer_info(state: ServerState) -> JSONResponse:
    tok = state.tokenizer
    require_tokenizer(tok, "there is no tokenizer to describe", NO_TOKENIZER_HINT, None)
    return JSONResponse({
        "tokenizer_class": type(tok).__name__,
        "bos_token": tok.bos_token,
        "eos_token": tok.eos_token,
        "pad_token": tok.pad_token,
        "unk_token": tok.unk_token,
        "chat_template": getattr(tok, "chat_template", None),
        "model_max_length": state.context_len,
        "vocab_size": state.vocab_size,
    })
