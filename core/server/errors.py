"""OpenAI-style errors: one exception type the handlers raise and the JSON body every 4xx/5xx
answer carries: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse


class APIError(Exception):
    """An error answered to the client. ``status`` is the HTTP status; ``type`` follows OpenAI
    (``invalid_request_error``, ``authentication_error``, ``not_found_error``, ``server_error``);
    ``param`` names the offending request field when there is one."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def error_body(
    message: str, type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def invalid(message: str, param: str | None = None, code: str | None = None) -> APIError:
    """A 400 ``invalid_request_error``."""
    return APIError(message, param=param, code=code)


def unsupported(param: str, detail: str = "") -> APIError:
    """A 400 for a recognised OpenAI parameter this server does not implement."""
    extra = f" {detail}" if detail else ""
    return APIError(
        f"The parameter '{param}' is not supported by this server.{extra}",
        param=param,
        code="unsupported_parameter",
    )


def from_engine_error(exc: BaseException) -> APIError | None:
    """The answer to an error raised by the engine, or ``None`` if it is not one of its
    documented errors (``InvalidRequestError`` → 400, ``EngineDeadError`` → 503)."""
    import anyware

    invalid_cls = getattr(anyware, "InvalidRequestError", None)
    dead_cls = getattr(anyware, "EngineDeadError", None)
    if dead_cls is not None and isinstance(exc, dead_cls):
        return APIError(
            f"The engine is not running: {exc}", status=503, type="server_error",
            code="engine_dead",
        )
    if invalid_cls is not None and isinstance(exc, invalid_cls):
        return invalid(str(exc), param=getattr(exc, "param", None))
    return None
