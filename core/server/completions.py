"""POST /v1/completions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from anyware.server.choices import ChoiceAccumulator, UsageCounter, primed
from anyware.server.errors import from_engine_error
from anyware.server.logprobs import completion_logprobs, echo_logprobs, joined
from anyware.server.openai_requests import CompletionRequest
from anyware.server.openai_responses import CompletionChoice, CompletionResponse
from anyware.server.prompts import (
    check_fits,
    check_token_ids,
    encode_text,
    normalize_completion_prompt,
)
from anyware.server.request_checks import (
    check_model,
    check_tokenizer_options,
    check_unsupported_completion,
    parse_body,
)
from anyware.server.sampling import build_sampling_params
from anyware.server.state import ServerState
from anyware.server.streams import (
    SSE_DONE,
    SSE_HEADERS,
    engine_stream,
    error_event,
    merge,
    response_body,
    sse,
    unless_disconnected,
    usage_event,
)
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions


@dataclass
class PreparedPrompt:
    ids: list[int]
    text: str | None  # the prompt as text when it was given as text (for echo)
    params: Any


def _prepare(state: ServerState, req: CompletionRequest) -> list[PreparedPrompt]:
    logprobs = req.logprobs
    out = []
    for p in normalize_completion_prompt(req.prompt):
        if isinstance(p, str):
            ids, text = encode_text(state.tokenizer, p, add_special_tokens=True), p
        else:
            check_token_ids(p, state.vocab_size, "prompt")
            ids, text = p, None
        max_new = check_fits(len(ids), req.max_tokens, state.context_len, "prompt")
        if req.max_tokens is None:
            max_new = min(DEFAULT_MAX_TOKENS, max_new)
        # echo with logprobs: the prompt's logprobs too (first token null), as OpenAI does
        prompt_lp = logprobs if req.echo else None
        out.append(PreparedPrompt(ids, text,
                                  build_sampling_params(req, max_new, logprobs, prompt_lp)))
    return out


async def create_completion(state: ServerState, request: Request) -> Response:
    req = parse_body(await request.body(), CompletionRequest)
    check_model(req.model, state.served_model_name)
    check_unsupported_completion(req)
    check_tokenizer_options(state.tokenizer, req)
    prepared = await asyncio.to_thread(_prepare, state, req)
    rid = state.new_id("cmpl")
    usage = UsageCounter([len(p.ids) for p in prepared])
    state.metrics.request_prompt_tokens.inc(usage.prompt)
    streams = [
        engine_stream(state, p.ids, p.params, rid if len(prepared) == 1 else f"{rid}-{i}")
        for i, p in enumerate(prepared)
    ]
    created = int(time.time())
    try:
        if req.stream:
            items = await primed(request, merge(streams))
            return StreamingResponse(
                _stream(state, req, prepared, rid, created, items, usage),
                media_type="text/event-stream",
                headers=SSE_HEADERS,
            )
        return await unless_disconnected(
            request, lambda: _collect(state, req, prepared, rid, created, merge(streams), usage)
        )
    except Exception as exc:
        mapped = from_engine_error(exc)
        if mapped is None:
            raise
        raise mapped from None


def _prompt_logprobs(state: ServerState, req: CompletionRequest, p: PreparedPrompt,
                     entries: list | None) -> Any:
    if entries is None:  # the request ended before its prompt logprobs came (an abort)
        entries = [None] * len(p.ids)
    return echo_logprobs(p.ids, entries, state.text_of, bool(req.logprobs))


def _echo_text(state: ServerState, p: PreparedPrompt) -> str:
    if p.text is not None:
        return p.text
    return state.tokenizer.decode(p.ids, skip_special_tokens=True)


async def _collect(
    state: ServerState,
    req: CompletionRequest,
    prepared: list[PreparedPrompt],
    rid: str,
    created: int,
    items: AsyncIterator[tuple[int, Any]],
    usage: UsageCounter,
) -> JSONResponse:
    n = req.n
    accs = [ChoiceAccumulator() for _ in range(len(prepared) * n)]
    prompt_lps: dict[int, list] = {}
    async for i, out in items:
        usage.add(i, out)
        if out.prompt_logprobs is not None:
            prompt_lps[i] = out.prompt_logprobs
        for o in out.outputs:
            accs[i * n + o.index].add(o)
    state.metrics.request_generation_tokens.inc(usage.completion)
    choices = []
    for idx, acc in enumerate(accs):
        prefix = _echo_text(state, prepared[idx // n]) if req.echo else ""
        lp = None
        if req.logprobs is not None:
            lp = completion_logprobs(acc.logprobs, state.text_of, len(prefix), req.logprobs > 0)
            if req.echo:
                lp = joined(_prompt_logprobs(state, req, prepared[idx // n],
                                             prompt_lps.get(idx // n)), lp)
        choices.append(
            CompletionChoice(
                index=idx,
                text=prefix + acc.text,
                logprobs=lp,
                finish_reason=acc.finish_reason,
                stop_reason=acc.stop_reason,
            )
        )
    return JSONResponse(response_body(CompletionResponse, rid, created,
                                      state.served_model_name, choices, usage))


async def _stream(
    state: ServerState,
    req: CompletionRequest,
    prepared: list[PreparedPrompt],
    rid: str,
    created: int,
    items: AsyncIterator[tuple[int, Any]],
    usage: UsageCounter,
) -> AsyncIterator[str]:
    n = req.n
    include_usage = req.include_usage()
    offsets = [0] * (len(prepared) * n)

    def chunk(choice: CompletionChoice) -> str:
        body = CompletionResponse(
            id=rid, created=created, model=state.served_model_name, choices=[choice]
        ).model_dump()
        if not include_usage:
            body.pop("usage")
        return sse(body)

    def echo(i: int, entries: list | None) -> Iterator[str]:
        text = _echo_text(state, prepared[i])
        lp = None if entries is None else _prompt_logprobs(state, req, prepared[i], entries)
        for idx in range(i * n, (i + 1) * n):
            offsets[idx] = len(text)
            yield chunk(CompletionChoice(index=idx, text=text, logprobs=lp))

    # with logprobs, a prompt is echoed once its prompt logprobs have come
    echo_pending = set(range(len(prepared))) if req.echo and req.logprobs is not None else set()
    try:
        if req.echo and not echo_pending:
            for i in range(len(prepared)):
                for c in echo(i, None):
                    yield c
        async for i, out in items:
            usage.add(i, out)
            if i in echo_pending and out.prompt_logprobs is not None:
                echo_pending.discard(i)
                for c in echo(i, out.prompt_logprobs):
                    yield c
            for o in out.outputs:
                # without a tokenizer there is no text: a chunk (text "") still goes out for
                # every engine output with tokens, so clients can time them (docs/server.md)
                if not (o.text or o.finish_reason or (req.logprobs is not None and o.logprobs)
                        or (state.tokenizer is None and o.token_ids)):
                    continue
                idx = i * n + o.index
                lp = None
                if req.logprobs is not None:
                    lp = completion_logprobs(
                        o.logprobs or [], state.text_of, offsets[idx], req.logprobs > 0
                    )
                offsets[idx] += len(o.text)
                yield chunk(
                    CompletionChoice(
                        index=idx,
                        text=o.text,
                        logprobs=lp,
                        finish_reason=o.finish_reason,
                        stop_reason=o.stop_reason,
                    )
                )
        if include_usage:
            yield usage_event(CompletionResponse, rid, created, state.served_model_name, usage)
    except Exception as exc:
        yield error_event(exc)
    finally:
        state.metrics.request_generation_tokens.inc(usage.completion)
    yield SSE_DONE
