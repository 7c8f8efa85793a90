"""POST /generate: the native endpoint. Text or token ids in, text, token ids and metadata out.

Request: ``{"text": str | [str], "input_ids": [int] | [[int]], "sampling_params": {...},
"stream": bool}`` (exactly one of ``text`` / ``input_ids``). ``sampling_params`` takes the
engine's ``SamplingParams`` fields by name (``prompt_logprobs: k`` adds
``"prompt_logprobs"``: one entry per prompt token, the first ``null``, each ``{"token_id",
"logprob", "top": [[id, logprob], ...]}``; ``max_new_tokens: 0`` runs the prompt only). Answer: one object per prompt and sample,
``{"index", "text", "output_ids", "meta_info": {...}}`` (a list when there are several)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from anyware.server.choices import ChoiceAccumulator, UsageCounter, primed
from anyware.server.errors import APIError, from_engine_error, invalid
from anyware.server.openai_requests import RequestModel
from anyware.server.prompts import (
    USE_STOP_TOKEN_IDS,
    check_fits,
    check_token_ids,
    encode_text,
    require_tokenizer,
)
from anyware.server.request_checks import parse_body
from anyware.server.sampling import make_sampling_params
from anyware.server.state import ServerState
from anyware.server.streams import (
    SSE_DONE,
    SSE_HEADERS,
    engine_stream,
    merge,
    sse,
    unless_disconnected,
)
from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

DEFAULT_MAX_NEW_TOKENS = 128


class NativeSamplingParams(RequestModel):
    max_new_tokens: int | None = Field(default=None, ge=0)  # 0: prompt_logprobs only
    temperature: float = Field(default=1.0, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=-1, ge=-1)
    min_p: float = Field(default=0.0, ge=0.0, le=1.0)
    repetition_penalty: float = Field(default=1.0, gt=0.0)
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    seed: int | None = None
    n: int = Field(default=1, ge=1, le=128)
    stop: list[str] = Field(default_factory=list)
    stop_token_ids: list[int] = Field(default_factory=list)
    ignore_eos: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=20)
    prompt_logprobs: int | None = Field(default=None, ge=0, le=20)
    skip_special_tokens: bool = True


class GenerateRequest(RequestModel):
    text: str | list[str] | None = None
    input_ids: list[int] | list[list[int]] | None = None
    sampling_params: NativeSamplingParams = Field(default_factory=NativeSamplingParams)
    stream: bool = False
    model: str | None = None  # sent by routers; one model per server, so it selects nothing


def _prompts(state: ServerState, req: GenerateRequest) -> list[list[int]]:
    if (req.text is None) == (req.input_ids is None):
        raise invalid("Give exactly one of 'text' and 'input_ids'.", param="text")
    if req.text is not None:
        texts = [req.text] if isinstance(req.text, str) else req.text
        if not texts:
            raise invalid("'text' must not be an empty list.", param="text")
        return [encode_text(state.tokenizer, t, add_special_tokens=True, param="text")
                for t in texts]
    ids = req.input_ids or []
    batch = [ids] if not ids or isinstance(ids[0], int) else ids
    for row in batch:
        if not row:
            raise invalid("'input_ids' must not be empty.", param="input_ids")
        check_token_ids(row, state.vocab_size, "input_ids")
    return batch


def _prepare(state: ServerState, req: GenerateRequest) -> list[tuple[list[int], Any]]:
    sp = req.sampling_params
    if sp.stop:
        require_tokenizer(state.tokenizer, "stop strings cannot be matched", USE_STOP_TOKEN_IDS,
                          "sampling_params.stop")
    out = []
    for ids in _prompts(state, req):
        param = "text" if req.text is not None else "input_ids"
        max_new = check_fits(len(ids), sp.max_new_tokens, state.context_len, param)
        if sp.max_new_tokens is None:
            max_new = min(DEFAULT_MAX_NEW_TOKENS, max_new)
        kwargs = sp.model_dump()
        kwargs.update(max_new_tokens=max_new, stop=tuple(sp.stop),
                      stop_token_ids=tuple(sp.stop_token_ids))
        out.append((ids, make_sampling_params(**kwargs)))
    return out


def _meta(rid: str, prompt_len: int, acc: ChoiceAccumulator, cached: int, start: float) -> dict:
    return {
        "id": rid,
        "prompt_tokens": prompt_len,
        "completion_tokens": len(acc.token_ids),
        "cached_tokens": cached,
        "finish_reason": acc.finish_reason,
        "stop_reason": acc.stop_reason,
        "e2e_latency": time.monotonic() - start,
        # speculative decoding (0 without): verify steps, draft tokens they kept, and tokens
        # per verify step (accepted drafts + the target's own)
        "spec_verify_ct": acc.spec_verify_ct,
        "spec_accepted_tokens": acc.spec_accepted_tokens,
        "spec_accept_length": ((acc.spec_accepted_tokens + acc.spec_verify_ct)
                               / acc.spec_verify_ct if acc.spec_verify_ct else 0.0),
    }


def _entry(e: Any) -> dict[str, Any] | None:
    if e is None:
        return None
    return {"token_id": e.token_id, "logprob": e.logprob, "top": [list(t) for t in e.top or ()]}


def _logprobs(acc: ChoiceAccumulator) -> list[dict[str, Any]]:
    return [_entry(e) for e in acc.logprobs]


def _prompt_logprobs(entries: list | None) -> list[dict[str, Any] | None] | None:
    return None if entries is None else [_entry(e) for e in entries]


async def generate(state: ServerState, request: Request) -> Response:
    req = parse_body(await request.body(), GenerateRequest)
    prepared = await asyncio.to_thread(_prepare, state, req)
    rid = state.new_id("gen")
    start = time.monotonic()
    usage = UsageCounter([len(ids) for ids, _ in prepared])
    state.metrics.request_prompt_tokens.inc(usage.prompt)
    streams = [
        engine_stream(state, ids, params, f"{rid}-{i}")
        for i, (ids, params) in enumerate(prepared)
    ]
    n = req.sampling_params.n
    try:
        if req.stream:
            items = await primed(request, merge(streams))
            return StreamingResponse(
                _stream(state, n, rid, start, items, usage),
                media_type="text/event-stream",
                headers=SSE_HEADERS,
            )

        async def collect() -> JSONResponse:
            accs = [ChoiceAccumulator() for _ in range(len(prepared) * n)]
            prompt_lps: dict[int, list] = {}
            async for i, out in merge(streams):
                usage.add(i, out)
                if out.prompt_logprobs is not None:
                    prompt_lps[i] = out.prompt_logprobs
                for o in out.outputs:
                    accs[i * n + o.index].add(o)
            state.metrics.request_generation_tokens.inc(usage.completion)
            results = []
            for idx, acc in enumerate(accs):
                item = {
                    "index": idx,
                    "text": acc.text,
                    "output_ids": acc.token_ids,
                    "meta_info": _meta(rid, usage.prompt_lens[idx // n], acc,
                                       usage.cached.get(idx // n, 0), start),
                }
                if req.sampling_params.logprobs is not None:
                    item["logprobs"] = _logprobs(acc)
                if req.sampling_params.prompt_logprobs is not None:
                    item["prompt_logprobs"] = _prompt_logprobs(prompt_lps.get(idx // n))
                results.append(item)
            return JSONResponse(results[0] if len(results) == 1 else results)

        return await unless_disconnected(request, collect)
    except Exception as exc:
        mapped = from_engine_error(exc)
        if mapped is None:
            raise
        raise mapped from None


async def _stream(
    state: ServerState,
    n: int,
    rid: str,
    start: float,
    items: AsyncIterator[tuple[int, Any]],
    usage: UsageCounter,
) -> AsyncIterator[str]:
    try:
        async for i, out in items:
            usage.add(i, out)
            for o in out.outputs:
                acc = ChoiceAccumulator()
                acc.add(o)
                item = {
                    "index": i * n + o.index,
                    "text": o.text,
                    "output_ids": list(o.token_ids),
                    "finished": o.finish_reason is not None,
                    "meta_info": _meta(rid, usage.prompt_lens[i], acc,
                                       usage.cached.get(i, 0), start),
                }
                if o.logprobs:
                    item["logprobs"] = [_entry(e) for e in o.logprobs]
                if out.prompt_logprobs is not None:
                    item["prompt_logprobs"] = _prompt_logprobs(out.prompt_logprobs)
                yield sse(item)
    except Exception as exc:
        err = from_engine_error(exc) or APIError(
            f"Internal error while generating: {exc}", status=500, type="server_error"
        )
        yield sse(err.body())
    finally:
        state.metrics.request_generation_tokens.inc(usage.completion)
    yield SSE_DONE
