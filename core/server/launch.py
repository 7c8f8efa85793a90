"""Running the app under uvicorn until SIGINT/SIGTERM (drain, then exit 0) or the engine's death
(exit 1), then shutting the engine down."""

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

GRACEFUL_SHUTDOWN_S = 30.0
EXIT_ENGINE_DIED = 1


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


class _Server(uvicorn.Server):
    """uvicorn's server, which marks the app as draining the moment a shutdown starts."""

    def __init__(self, config: uvicorn.Config, state: Any) -> None:
        super().__init__(config)
        self.anyware_state = state

    def handle_exit(self, sig: int, frame: Any) -> None:
        if not self.anyware_state.draining:
            log.info("shutting down: no new requests; finishing those in flight (up to %s s)",
                     self.config.timeout_graceful_shutdown)
        self.anyware_state.draining = True
        super().handle_exit(sig, frame)


def serve(
    engine: Any,
    served_model_name: str,
    *,
    host: str = "127.0.0.1",
    port: int = 30000,
    api_key: str | None = None,
    log_level: str = "info",
    uvicorn_log_level: str | None = None,
    access_log: bool = True,
    log_requests: bool = False,
    log_stats_interval: float | None = DEFAULT_INTERVAL_S,
    shutdown_timeout: float = GRACEFUL_SHUTDOWN_S,
    sock: socket.socket | None = None,
    launch: dict[str, Any] | None = None,
) -> int:
    """Serve ``engine`` on ``host:port`` (or on ``sock``, from :func:`bind_socket`) until
    interrupted or until the engine dies; returns the process exit status.

    SIGINT/SIGTERM: the listening socket closes, /health and new generation requests answer
    503, and the requests in flight get up to ``shutdown_timeout`` seconds to finish (streams
    still open after that are cancelled, which aborts their engine requests); then the engine
    shuts down and the status is 0. An engine that dies (a crash, its process killed) fails
    the requests in flight with a 5xx naming the cause, and the status is
    ``EXIT_ENGINE_DIED``. ``access_log``: one line per HTTP request (uvicorn's);
    ``log_requests``: one line per generation request; ``log_stats_interval``: engine
    statistics every that many seconds while busy (``None`` or 0: never). This function owns
    ``engine`` from here on."""
    launch = {"host": host, "port": port, **(launch or {})}
    app = create_app(engine, served_model_name, api_key, launch=launch,
                     log_stats_interval=log_stats_interval)
    state = app.state.anyware
    state.log_requests = log_requests
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=uvicorn_log_level or log_level,
        timeout_graceful_shutdown=shutdown_timeout,
        access_log=access_log,
    )
    server = _Server(config, state)
    died: list[str] = []

    def on_engine_death(cause: str) -> None:
        log.error("the engine died (%s); stopping the server", cause)
        died.append(cause)
        state.draining = True
        server.should_exit = True

    engine.on_death(on_engine_death)
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
    return EXIT_ENGINE_DIED if died else 0


def _note_sigterm(signum: int, frame: object) -> None:
    log.info("SIGTERM received")
