"""Fixtures: a tiny random Llama (built locally), one real engine for the session, and servers
on free local ports running in background threads."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from .tiny_model import build_tiny_llama

MODEL_NAME = "tiny-llama"
BARE_MODEL_NAME = "tiny-bare"
API_KEY = "sk-test-123"


@dataclass
class RunningServer:
    base_url: str  # http://127.0.0.1:PORT
    engine: Any
    model: str

    @property
    def v1(self) -> str:
        return f"{self.base_url}/v1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_subprocess(*args: str, timeout: float = 90,
                     launcher: list[str] | None = None) -> tuple[subprocess.Popen, int]:
    """``anyware serve ARGS --port <free>`` in a subprocess, returned once ``/health`` answers
    200 (the caller stops it). Fails with the server's output if it exits or times out.
    ``launcher``: the command before ``serve`` (default: this Python running the CLI; e.g.
    torchrun's ``python -m torch.distributed.run ... -m anyware``)."""
    port = _free_port()
    launcher = launcher or [sys.executable, "-m", "anyware.cli.main"]
    proc = subprocess.Popen([*launcher, "serve", *args, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(proc.stdout.read())
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("server did not come up: " + proc.stdout.read())
        time.sleep(0.25)


def _start(app: Any) -> tuple[Any, threading.Thread, int]:
    import uvicorn

    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    return server, thread, port


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def bare_model_dir(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model's config.json alone: no weights file, no tokenizer (what a shape preset
    is, at a CPU-friendly size); load it with ``load_format="dummy"``."""
    out = tmp_path_factory.mktemp("tiny-bare")
    (out / "config.json").write_text((model_dir / "config.json").read_text())
    return out


@pytest.fixture(scope="session")
def bare_engine(bare_model_dir: Path) -> Iterator[Any]:
    from anyware import Engine

    eng = Engine(model=str(bare_model_dir), load_format="dummy", show_progress=False)
    assert eng.tokenizer is None
    yield eng
    eng.shutdown()


@pytest.fixture(scope="session")
def bare_server(bare_engine: Any) -> Iterator[RunningServer]:
    """A server around the tokenizer-less engine."""
    yield from _serve(bare_engine, None, BARE_MODEL_NAME)


@pytest.fixture(scope="session")
def engine(model_dir: Path) -> Iterator[Any]:
    from anyware import Engine

    eng = Engine(model=str(model_dir), show_progress=False)
    yield eng
    eng.shutdown()


def _serve(engine: Any, api_key: str | None, name: str = MODEL_NAME) -> Iterator[RunningServer]:
    from anyware.server.app import create_app

    server, thread, port = _start(create_app(engine, name, api_key=api_key))
    yield RunningServer(f"http://127.0.0.1:{port}", engine, name)
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def server(engine: Any) -> Iterator[RunningServer]:
    yield from _serve(engine, None)


@pytest.fixture(scope="session")
def split_engine(model_dir: Path) -> Iterator[Any]:
    """The tiny model's engine in a process of its own (what ``anyware serve`` runs)."""
    import os

    from anyware import Engine

    eng = Engine(model=str(model_dir), engine_process=True, show_progress=False)
    assert eng.core is None and eng.info.pid != os.getpid()
    yield eng
    eng.shutdown()


@pytest.fixture(scope="session")
def split_server(split_engine: Any) -> Iterator[RunningServer]:
    yield from _serve(split_engine, None)


@pytest.fixture(scope="session")
def auth_server(engine: Any) -> Iterator[RunningServer]:
    yield from _serve(engine, API_KEY)


@pytest.fixture(scope="session")
def client(server: RunningServer) -> Any:
    import openai

    return openai.OpenAI(base_url=server.v1, api_key="unused", max_retries=0, timeout=60)


def wait_idle(engine: Any, timeout: float = 30.0) -> Any:
    """Engine stats once nothing runs, waits or holds KV pages (fails after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        s = engine.stats()
        if s.running == 0 and s.waiting == 0 and s.kv_pages_used == 0:
            return s
        if time.monotonic() > deadline:
            raise AssertionError(f"the engine did not return to idle: {s}")
        time.sleep(0.05)
