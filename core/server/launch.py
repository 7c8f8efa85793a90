"""Running the app under uvicorn until SIGINT/SIGTERM, then shutting the engine down."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import uvicorn
from anyware.server.app import create_app

log = logging.getLogger("anyware.server")

GRACEFUL_SHUTDOWN_S = 5


def serve(
    engine: Any,
    served_model_name: str,
    *,
    host: str = "127.0.0.1",
    port: int = 30000,
    api_key: str | None = None,
    log_level: str = "info",
) -> None:
    """Serve ``engine`` on ``host:port`` until interrupted. uvicorn turns SIGINT and SIGTERM
    into a graceful shutdown (in-flight requests get ``GRACEFUL_SHUTDOWN_S`` seconds, streams
    still open after that are cancelled, which aborts their engine requests); then the engine is
    shut down. This function owns ``engine`` from here on."""
    app = create_app(engine, served_model_name, api_key)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        access_log=log_level == "debug",
    )
    server = uvicorn.Server(config)
    # uvicorn handles SIGTERM itself (graceful shutdown), then re-raises it to the handler that
    # was installed before it: make that one a no-op so that the engine shutdown below runs
    # and the process exits with status 0.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _note_sigterm)
    try:
        server.run()
    finally:
        log.info("shutting down the engine")
        engine.shutdown()
        log.info("engine shut down")
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _note_sigterm(signum: int, frame: object) -> None:
    log.info("SIGTERM received")
