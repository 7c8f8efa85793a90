"""Driving engine requests from the HTTP side: abort on cancellation (a client that went away),
latency measurements, merging several requests' streams, and server-sent-event framing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from anyware.server.metrics import ServerMetrics
from starlette.requests import Request

T = TypeVar("T")
log = logging.getLogger("anyware.server.requests")


async def engine_stream(
    state: Any, prompt: list[int], params: Any, request_id: str
) -> AsyncIterator[Any]:
    """``state.engine.generate_async`` with additions: if the consumer stops early (cancelled
    because the client disconnected, or an error), the engine request is aborted so that its KV
    pages are freed; the request's latencies (time to first token, inter-token, per output
    token, end to end) and its outcome are recorded in ``state.metrics``; with
    ``state.log_requests`` it is logged."""
    metrics: ServerMetrics = state.metrics
    engine = state.engine
    if state.log_requests:
        log.info("request %s: %d prompt tokens, %s", request_id, len(prompt), params)
    start = time.monotonic()
    first: float | None = None
    last: float | None = None
    finished = False
    tokens = 0
    reason = "abort"
    agen = engine.generate_async(prompt, params, request_id=request_id)
    metrics.requests_running.inc()
    try:
        async for out in agen:
            now = time.monotonic()
            steps = max((len(o.token_ids) for o in out.outputs), default=0)
            if steps:
                tokens += steps
                if last is None:
                    first = now
                    metrics.ttft.observe(now - start)
                else:
                    per_token = (now - last) / steps
                    for _ in range(steps):
                        metrics.itl.observe(per_token)
                last = now
            if out.finished:
                finished = True
                reasons = {o.finish_reason for o in out.outputs} - {None}
                reason = reasons.pop() if len(reasons) == 1 else "mixed" if reasons else "abort"
            yield out
    except Exception:
        reason = "error"
        raise
    finally:
        metrics.requests_running.dec()
        if not finished:
            with contextlib.suppress(Exception):
                engine.abort(request_id)
        with contextlib.suppress(BaseException):
            await agen.aclose()
        end = time.monotonic()
        metrics.e2e.observe(end - start)
        if first is not None and last is not None and tokens > 1:
            metrics.tpot.observe((last - first) / (tokens - 1))
        metrics.request_finished.labels(finished_reason=reason).inc()


async def merge(streams: list[AsyncIterator[T]]) -> AsyncIterator[tuple[int, T]]:
    """Items of several async iterators as ``(stream index, item)`` in arrival order. Leaving
    early cancels (and so aborts) every stream still running."""
    if len(streams) == 1:
        async for item in streams[0]:
            yield 0, item
        return
    queue: asyncio.Queue[tuple[int, Any, BaseException | None, bool]] = asyncio.Queue()

    async def pump(i: int, it: AsyncIterator[T]) -> None:
        try:
            async for item in it:
                await queue.put((i, item, None, False))
        except Exception as exc:
            await queue.put((i, None, exc, True))
            return
        await queue.put((i, None, None, True))

    tasks = [asyncio.ensure_future(pump(i, s)) for i, s in enumerate(streams)]
    try:
        remaining = len(tasks)
        while remaining:
            i, item, exc, done = await queue.get()
            if exc is not None:
                raise exc
            if done:
                remaining -= 1
                continue
            yield i, item
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class ClientGone(Exception):
    """The client disconnected before the answer was ready."""


async def _until_disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def unless_disconnected(request: Request, work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work()``; if the client disconnects first, cancel it (which aborts its engine
    requests) and raise :class:`ClientGone`."""
    task = asyncio.ensure_future(work())
    watcher = asyncio.ensure_future(_until_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    raise ClientGone()


def sse(payload: dict[str, Any] | str) -> str:
    """One server-sent event carrying ``payload`` (JSON) or the literal ``[DONE]``."""
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n"


SSE_DONE = "data: [DONE]\n\n"


def response_body(response_cls: Any, rid: str, created: int, model: str, choices: list,
                  usage: Any) -> dict[str, Any]:
    """A chat or completion response envelope (``ChatCompletionResponse`` or
    ``CompletionResponse``) as a dict, with the usage block of a ``UsageCounter``."""
    from anyware.server.openai_responses import UsageInfo

    return response_cls(id=rid, created=created, model=model, choices=choices,
                        usage=UsageInfo.of(usage.prompt, usage.completion,
                                           usage.cached_tokens)).model_dump()


def usage_event(response_cls: Any, rid: str, created: int, model: str, usage: Any) -> str:
    """The final ``stream_options.include_usage`` chunk: no choices, only usage."""
    return sse(response_body(response_cls, rid, created, model, [], usage))


def error_event(exc: Exception) -> str:
    """An OpenAI error body as an SSE event (headers are already sent: no status change)."""
    from anyware.server.errors import APIError, from_engine_error

    err = from_engine_error(exc) or APIError(
        f"Internal error while generating: {exc}", status=500, type="server_error"
    )
    return sse(err.body())
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
