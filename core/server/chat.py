"""POST /v1/chat/completions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from anyware.server.choices import ChoiceAccumulator, UsageCounter, primed
from anyware.server.errors import from_engine_error
from anyware.server.logprobs import chat_logprobs
from anyware.server.openai_requests import ChatCompletionRequest
from anyware.server.openai_responses import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionResponse,
    DeltaMessage,
)
from anyware.server.prompts import check_fits, encode_text, render_chat
from anyware.server.request_checks import check_model, check_unsupported_chat, parse_body
from anyware.server.sampling import build_sampling_params
from anyware.server.state import ServerState
from anyware.server.streams import (
    SSE_DONE,
    SSE_HEADERS,
    engine_stream,
    error_event,
    response_body,
    sse,
    unless_disconnected,
    usage_event,
)
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse


def _prepare(state: ServerState, req: ChatCompletionRequest) -> tuple[list[int], Any]:
    text = render_chat(state.tokenizer, req.messages)
    ids = encode_text(state.tokenizer, text, add_special_tokens=False)
    max_new = check_fits(len(ids), req.max_new_tokens(), state.context_len, "messages")
    logprobs = (req.top_logprobs or 0) if req.logprobs else None
    return ids, build_sampling_params(req, max_new, logprobs)


async def create_chat_completion(state: ServerState, request: Request) -> Response:
    req = parse_body(await request.body(), ChatCompletionRequest)
    check_model(req.model, state.served_model_name)
    check_unsupported_chat(req)
    ids, params = await asyncio.to_thread(_prepare, state, req)
    rid = state.new_id("chatcmpl")
    usage = UsageCounter([len(ids)])
    state.metrics.request_prompt_tokens.inc(usage.prompt)
    stream = engine_stream(state, ids, params, rid)
    created = int(time.time())
    try:
        if req.stream:
            items = await primed(request, stream)
            return StreamingResponse(
                _stream(state, req, rid, created, items, usage),
                media_type="text/event-stream",
                headers=SSE_HEADERS,
            )
        return await unless_disconnected(
            request, lambda: _collect(state, req, rid, created, stream, usage)
        )
    except Exception as exc:
        mapped = from_engine_error(exc)
        if mapped is None:
            raise
        raise mapped from None


async def _collect(
    state: ServerState,
    req: ChatCompletionRequest,
    rid: str,
    created: int,
    items: AsyncIterator[Any],
    usage: UsageCounter,
) -> JSONResponse:
    accs = [ChoiceAccumulator() for _ in range(req.n)]
    async for out in items:
        usage.add(0, out)
        for o in out.outputs:
            accs[o.index].add(o)
    state.metrics.request_generation_tokens.inc(usage.completion)
    choices = [
        ChatChoice(
            index=i,
            message=AssistantMessage(content=acc.text),
            logprobs=chat_logprobs(acc.logprobs, state.text_of) if req.logprobs else None,
            finish_reason=acc.finish_reason,
            stop_reason=acc.stop_reason,
        )
        for i, acc in enumerate(accs)
    ]
    return JSONResponse(response_body(ChatCompletionResponse, rid, created,
                                      state.served_model_name, choices, usage))


async def _stream(
    state: ServerState,
    req: ChatCompletionRequest,
    rid: str,
    created: int,
    items: AsyncIterator[Any],
    usage: UsageCounter,
) -> AsyncIterator[str]:
    include_usage = req.include_usage()

    def chunk(choice: ChatChunkChoice) -> str:
        body = ChatCompletionChunk(
            id=rid, created=created, model=state.served_model_name, choices=[choice]
        ).model_dump(exclude_none=False)
        if not include_usage:
            body.pop("usage")
        # OpenAI omits unset delta fields rather than sending nulls.
        body["choices"][0]["delta"] = {
            k: v for k, v in body["choices"][0]["delta"].items() if v is not None
        }
        return sse(body)

    try:
        for i in range(req.n):
            yield chunk(ChatChunkChoice(index=i, delta=DeltaMessage(role="assistant", content="")))
        async for out in items:
            usage.add(0, out)
            for o in out.outputs:
                if o.text or (req.logprobs and o.logprobs):
                    lp = chat_logprobs(o.logprobs or [], state.text_of) if req.logprobs else None
                    yield chunk(
                        ChatChunkChoice(index=o.index, delta=DeltaMessage(content=o.text),
                                        logprobs=lp)
                    )
                if o.finish_reason is not None:
                    yield chunk(
                        ChatChunkChoice(
                            index=o.index,
                            delta=DeltaMessage(),
                            finish_reason=o.finish_reason,
                            stop_reason=o.stop_reason,
                        )
                    )
        if include_usage:
            yield usage_event(ChatCompletionChunk, rid, created, state.served_model_name, usage)
    except Exception as exc:
        yield error_event(exc)
    finally:
        state.metrics.request_generation_tokens.inc(usage.completion)
    yield SSE_DONE
