"""The OpenAI-compatible HTTP server (``anyware serve``): ``create_app`` builds the FastAPI app
around an ``anyware.Engine``; ``serve`` runs it under uvicorn."""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "serve"]


def create_app(engine: Any, served_model_name: str, api_key: str | None = None,
               **kwargs: Any) -> Any:
    from anyware.server.app import create_app as _create_app

    return _create_app(engine, served_model_name, api_key, **kwargs)


def serve(engine: Any, served_model_name: str, **kwargs: Any) -> int:
    """Serve until interrupted; the exit status (0, or 1 when the engine died)."""
    from anyware.server.launch import serve as _serve

    return _serve(engine, served_model_name, **kwargs)
