"""Pure-ASGI middleware (so request bodies and disconnect messages pass through untouched):
the API-key check, and the request counter by endpoint and status.

With an API key set, every path except the probes in ``PUBLIC_PATHS`` needs the key, unknown
paths included: a client without the key gets 401 whatever the path (as api.openai.com answers),
so the routes a server has are not discoverable without credentials; with the key, an unknown
path is a 404."""

from __future__ import annotations

import hmac
import json

from anyware.server.errors import error_body
from anyware.server.metrics import ServerMetrics
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PUBLIC_PATHS = frozenset({"/health", "/health_generate", "/metrics", "/ping", "/version"})
# refused with 503 while the server drains (a client on a kept-alive connection can still send)
GENERATION_PATHS = frozenset({"/v1/completions", "/v1/chat/completions", "/generate",
                              "/health_generate"})
KNOWN_ENDPOINTS = PUBLIC_PATHS | {
    "/v1/completions", "/v1/chat/completions", "/v1/models", "/generate", "/tokenize",
    "/v1/tokenize", "/detokenize", "/v1/detokenize", "/tokenizer_info", "/get_model_info",
    "/get_server_info",
}


class ServerMiddleware:
    def __init__(self, app: ASGIApp, *, api_key: str | None, metrics: ServerMetrics,
                 state: object | None = None) -> None:
        self.app = app
        self.api_key = api_key
        self.metrics = metrics
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        endpoint = path if path in KNOWN_ENDPOINTS else (
            "/v1/models/{id}" if path.startswith("/v1/models/") else "other"
        )
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            if self.api_key is not None and path not in PUBLIC_PATHS:
                problem = self._auth_problem(scope)
                if problem is not None:
                    await _send_json(send_wrapper, 401, problem)
                    return
            if path in GENERATION_PATHS and getattr(self.state, "draining", False):
                await _send_json(send_wrapper, 503, error_body(
                    "The server is shutting down and accepts no new requests; retry on another "
                    "replica or after it restarts.", "server_error", None, "shutting_down"))
                return
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.requests.labels(endpoint=endpoint, status=str(status["code"])).inc()

    def _auth_problem(self, scope: Scope) -> dict | None:
        header = ""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        if not header:
            return error_body(
                "You didn't provide an API key. Provide it in the Authorization header "
                "(Authorization: Bearer YOUR_KEY).",
                "invalid_request_error",
                None,
                "missing_api_key",
            )
        scheme, _, token = header.partition(" ")
        assert self.api_key is not None
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), self.api_key.encode()
        ):
            return error_body(
                "Incorrect API key provided.", "invalid_request_error", None, "invalid_api_key"
            )
        return None


async def _send_json(send: Send, status: int, body: dict) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(payload)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
