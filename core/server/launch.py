"""Running the app under uvicorn until SIGINT/SIGTERM, then shutting the engine down."""

from __future__ import annotations

import logging
import signal
import socket
import threading
from typing import Any

import uvicorn
from anyware.server.app import create_app
from anyware.server.stats_log import DEFAULT_INTERVAL_S

log = logging.getLogger("anyware.server")

GRACEFUL_SHUTDOWN_S = 5


class PortInUseError(OSError):
    """The address to serve on cannot be bound (in use, or not an address of this machine)."""


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready socket bound to ``host:port``, taken before the model loads so that a
    busy port fails in a second instead of after the load (and no other process can take the
    port in between). Raises :class:`PortInUseError` with what to do."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # the option uvicorn sets too: a port in TIME_WAIT after a restart is free, a listener is not
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PortInUseError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}. Another server may be "
            f"using the port: stop it or choose another with --port."
        ) from None
    sock.set_inheritable(True)
    return sock


def serve(
    engine: Any,
    served_model_name: str,
    *,
    host: str = "127.0.0.1",
    port: int = 30000,
    api_key: str | None = None,
    log_level: str = "info",
    access_log: bool = True,
    log_stats_interval: float | None = DEFAULT_INTERVAL_S,
    sock: socket.socket | None = None,
    launch: dict[str, Any] | None = None,
) -> None:
    """Serve ``engine`` on ``host:port`` (or on ``sock``, from :func:`bind_socket`) until
    interrupted. uvicorn turns SIGINT and SIGTERM into a graceful shutdown (in-flight requests
    get ``GRACEFUL_SHUTDOWN_S`` seconds, streams still open after that are cancelled, which
    aborts their engine requests); then the engine is shut down. ``access_log``: one line per
    request at level info; ``log_stats_interval``: engine statistics every that many seconds
    while busy (``None`` or 0: never). This function owns ``engine`` from here on."""
    launch = {"host": host, "port": port, **(launch or {})}
    app = create_app(engine, served_model_name, api_key, launch=launch,
                     log_stats_interval=log_stats_interval)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        access_log=access_log,
    )
    server = uvicorn.Server(config)
    # uvicorn handles SIGTERM itself (graceful shutdown), then re-raises it to the handler that
    # was installed before it: make that one a no-op so that the engine shutdown below runs
    # and the process exits with status 0.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _note_sigterm)
    try:
        server.run(sockets=[sock] if sock is not None else None)
    finally:
        log.info("shutting down the engine")
        engine.shutdown()
        log.info("engine shut down")
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _note_sigterm(signum: int, frame: object) -> None:
    log.info("SIGTERM received")
