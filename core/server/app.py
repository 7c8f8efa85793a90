"""The FastAPI application: routes, error handling and middleware around one engine.

``create_app(engine, served_model_name, api_key=None)`` builds a new app; it does not own the
engine (whoever created the engine shuts it down, see :mod:`anyware.server.launch`). The
engine runs its scheduler loop in its own thread; everything here runs on the HTTP event loop
or, for tokenization, in worker threads."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from anyware.server.chat import create_chat_completion
from anyware.server.completions import create_completion
from anyware.server.errors import APIError, error_body, from_engine_error
from anyware.server.info import model_info, server_info, version
from anyware.server.middleware import ServerMiddleware
from anyware.server.native import generate
from anyware.server.openai_responses import ModelCard, ModelList
from anyware.server.sampling import make_sampling_params
from anyware.server.state import ServerState
from anyware.server.stats_log import EngineStatsLogger
from anyware.server.streams import ClientGone
from anyware.server.tokenize import detokenize, tokenize, tokenizer_info
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

log = logging.getLogger("anyware.server")

HEALTH_GENERATE_TIMEOUT_S = 30.0
STATUS_CLIENT_CLOSED = 499  # nobody reads it: the client has gone


def create_app(
    engine,
    served_model_name: str,
    api_key: str | None = None,
    *,
    launch: dict[str, Any] | None = None,
    log_stats_interval: float | None = None,
) -> FastAPI:
    """A FastAPI app serving ``engine`` under the model name ``served_model_name``. When
    ``api_key`` is set, every route except the probes (``PUBLIC_PATHS``) requires
    ``Authorization: Bearer <api_key>``. ``launch`` (host, port, ...) is reported by
    /get_server_info; ``log_stats_interval`` (seconds, ``None`` or 0: off) logs engine
    statistics periodically while the server runs."""
    state = ServerState.build(engine, served_model_name, api_key, launch)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = None
        if log_stats_interval:
            task = asyncio.ensure_future(EngineStatsLogger(engine, log_stats_interval).run())
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(title="Anyware", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.anyware = state
    _install_error_handlers(app)
    app.add_middleware(ServerMiddleware, api_key=api_key, metrics=state.metrics, state=state)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await create_completion(state, request)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await create_chat_completion(state, request)

    @app.post("/generate")
    async def native_generate(request: Request) -> Response:
        return await generate(state, request)

    def card() -> ModelCard:
        return ModelCard(
            id=served_model_name, created=state.created, max_model_len=state.context_len
        )

    @app.get("/v1/models")
    async def models() -> JSONResponse:
        return JSONResponse(ModelList(data=[card()]).model_dump())

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> JSONResponse:
        if model_id != served_model_name:
            raise APIError(
                f"The model '{model_id}' does not exist.", status=404, param="model",
                code="model_not_found",
            )
        return JSONResponse(card().model_dump())

    @app.get("/health")
    async def health() -> Response:
        if state.draining:
            return JSONResponse(error_body("shutting down: finishing the requests in flight",
                                           "server_error"), status_code=503)
        try:
            await asyncio.to_thread(engine.stats)
        except Exception as exc:
            return JSONResponse(error_body(f"unhealthy: {exc}", "server_error"), status_code=503)
        return Response(status_code=200)

    @app.get("/health_generate")
    async def health_generate() -> Response:
        params = make_sampling_params(max_new_tokens=1, temperature=0.0)
        rid = state.new_id("health")
        try:
            async with asyncio.timeout(HEALTH_GENERATE_TIMEOUT_S):
                async for _ in engine.generate_async([_health_token(state)], params,
                                                     request_id=rid):
                    pass
        except Exception as exc:
            engine.abort(rid)
            return JSONResponse(
                error_body(f"generation failed: {exc!r}", "server_error"), status_code=503
            )
        return Response(status_code=200)

    @app.post("/tokenize")
    @app.post("/v1/tokenize")
    async def tokenize_route(request: Request) -> Response:
        return await tokenize(state, request)

    @app.post("/detokenize")
    @app.post("/v1/detokenize")
    async def detokenize_route(request: Request) -> Response:
        return await detokenize(state, request)

    @app.get("/tokenizer_info")
    async def tokenizer_info_route() -> Response:
        return tokenizer_info(state)

    @app.get("/version")
    async def version_route() -> JSONResponse:
        return JSONResponse(version())

    @app.get("/ping")
    @app.post("/ping")
    async def ping() -> Response:
        return await health()

    @app.get("/model_info")  # sglang-router asks /model_info first, then /get_model_info
    @app.get("/get_model_info")
    async def get_model_info() -> JSONResponse:
        return JSONResponse(model_info(state))

    @app.get("/server_info")
    @app.get("/get_server_info")
    async def get_server_info() -> JSONResponse:
        return JSONResponse(await server_info(state))

    @app.get("/metrics")
    async def metrics() -> Response:
        body = await asyncio.to_thread(state.metrics.render)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    return app


def _health_token(state: ServerState) -> int:
    bos = getattr(state.tokenizer, "bos_token_id", None)
    return int(bos) if bos is not None and 0 <= bos < state.vocab_size else 0


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(_: Request, exc: APIError) -> Response:
        return exc.response()

    @app.exception_handler(ClientGone)
    async def client_gone(_: Request, exc: ClientGone) -> Response:
        return Response(status_code=STATUS_CLIENT_CLOSED)

    @app.exception_handler(RequestValidationError)
    async def validation(_: Request, exc: RequestValidationError) -> Response:
        return APIError(f"Invalid request: {exc.errors()}").response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(
            error_body(str(exc.detail), kind), status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> Response:
        mapped = from_engine_error(exc)
        if mapped is not None:
            return mapped.response()
        log.exception("internal error")
        return JSONResponse(
            error_body(f"Internal server error: {type(exc).__name__}", "server_error"),
            status_code=500,
        )
