"""`ProcessEngineLoop`: the front-end half of the engine process. Same surface as
:class:`anyware.engine.loop.EngineLoop` (``submit``, ``abort``, ``stats``, ``stop``), with the
:class:`EngineCore` in a child process (:mod:`anyware.engine.process`) instead of a thread.

A reader thread receives each engine step's deltas as one message and hands them to the
requests' sinks, exactly as the in-process loop's thread does. When the child dies (a crash,
SIGKILL, out of memory) every request in flight gets a final delta carrying the cause, later
calls raise :class:`EngineDeadError`, and the death callbacks run (``anyware serve`` exits
non-zero on them)."""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import pickle
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable

import zmq
from anyware.engine import wire
from anyware.engine.config import EngineConfig
from anyware.engine.errors import EngineDeadError
from anyware.engine.outputs import EngineStats
from anyware.request.delta import TokenDelta
from anyware.request.request import Request

log = logging.getLogger("anyware")

STOP_TIMEOUT_S = 60.0
ENGINE_MODULE = "anyware.engine.process"  # run as ``python -m ENGINE_MODULE``
READER_POLL_MS = 100


def _wait(proc: subprocess.Popen, timeout: float) -> int | None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        return proc.wait(timeout)
    return None


def _cleanup(proc: subprocess.Popen, push: zmq.Socket, lock: threading.Lock,
             tmpdir: str, timeout: float) -> None:
    """Stop the child (asked first; it ignores SIGTERM, so then SIGKILL) and reap it: no zombie
    and no orphan, whether ``stop`` was called or the interpreter is exiting."""
    if proc.poll() is None:
        with lock, contextlib.suppress(zmq.ZMQError):
            push.send_multipart([wire.STOP], zmq.NOBLOCK)
        if _wait(proc, timeout) is None:
            log.warning("engine process %s did not stop in %.0f s; killing it", proc.pid, timeout)
            proc.kill()
    _wait(proc, 10)
    shutil.rmtree(tmpdir, ignore_errors=True)


class ProcessEngineLoop:
    """Starts the engine process for ``cfg`` and blocks until its model is loaded (a load error
    is raised here as the child raised it)."""

    def __init__(self, cfg: EngineConfig, debug_invariants: bool = False,
                 start_timeout: float | None = None) -> None:
        self.error: EngineDeadError | None = None
        self._stopped = False
        self._sinks: dict[str, Callable[[TokenDelta], None]] = {}
        self._calls: dict[int, queue.SimpleQueue] = {}
        self._call_ids = itertools.count()
        self._death_callbacks: list[Callable[[str], None]] = []
        self._lock = threading.Lock()  # the push socket is used from any thread
        self._tmpdir = tempfile.mkdtemp(prefix="anyware-engine-")
        in_addr, out_addr = f"ipc://{self._tmpdir}/in", f"ipc://{self._tmpdir}/out"
        self._ctx = zmq.Context()
        # no high-water mark: a burst of requests (or a front end behind by many steps) must
        # queue, never block the sender (zmq's default stops a PUSH at 1000 messages)
        self._push = self._ctx.socket(zmq.PUSH)
        self._push.setsockopt(zmq.LINGER, 0)
        self._push.setsockopt(zmq.SNDHWM, 0)
        self._push.bind(in_addr)
        self._pull = self._ctx.socket(zmq.PULL)
        self._pull.setsockopt(zmq.LINGER, 0)
        self._pull.setsockopt(zmq.RCVHWM, 0)
        self._pull.bind(out_addr)
        level = logging.getLogger("anyware").getEffectiveLevel()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", ENGINE_MODULE, in_addr, out_addr,
             str(os.getpid()), "1" if debug_invariants else "0", str(level)],
            stdin=subprocess.PIPE)
        with self.proc.stdin:
            pickle.dump(cfg, self.proc.stdin)
        self._finalizer = weakref.finalize(self, _cleanup, self.proc, self._push, self._lock,
                                           self._tmpdir, STOP_TIMEOUT_S)
        try:
            self.info: wire.EngineInfo = self._wait_ready(start_timeout)
        except BaseException:
            self._finalizer()
            self._close_sockets()
            raise
        self._reader = threading.Thread(target=self._read, name="anyware-engine-reader",
                                        daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int | None:
        return self.proc.pid

    def _wait_ready(self, timeout: float | None) -> wire.EngineInfo:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._pull.poll(READER_POLL_MS):
                frames = self._pull.recv_multipart()
                if frames[0] == wire.READY:
                    return wire.load(frames[1])
                if frames[0] == wire.DEAD:
                    _wait(self.proc, 30)
                    exc = wire.load(frames[1])
                    raise exc if isinstance(exc, BaseException) else EngineDeadError(str(exc))
            elif self.proc.poll() is not None:
                raise EngineDeadError(
                    f"the engine process exited with code {self.proc.returncode} while loading "
                    "the model (see the log above for why)")
            if deadline is not None and time.monotonic() > deadline:
                raise EngineDeadError(f"the engine process did not load the model in {timeout} s")

    # ------------------------------------------------------------ called from any thread
    def _send(self, *frames: bytes) -> None:
        self._check_alive()
        with self._lock:
            self._push.send_multipart(frames)

    def submit(self, reqs: list[Request]) -> None:
        """Add requests atomically (they are scheduled together)."""
        self._check_alive()
        for r in reqs:
            self._sinks[r.rid] = r.sink
        specs = [wire.RequestSpec(r.rid, r.prompt_ids, r.params, r.seed, r.prompt_lp_next)
                 for r in reqs]
        try:
            self._send(wire.ADD, wire.encode(specs))
        except BaseException:
            for r in reqs:
                self._sinks.pop(r.rid, None)
            raise

    def abort(self, rid: str) -> None:
        if self.error is None and not self._stopped:
            with contextlib.suppress(EngineDeadError, zmq.ZMQError):
                self._send(wire.ABORT, wire.encode([rid]))

    def _call(self, name: str, timeout: float):
        box: queue.SimpleQueue = queue.SimpleQueue()
        call_id = next(self._call_ids)
        self._calls[call_id] = box
        try:
            self._send(wire.CALL, wire.encode(call_id), wire.encode(name))
            try:
                ok, value = box.get(timeout=timeout)
            except queue.Empty:
                self._check_alive()
                raise EngineDeadError(f"the engine process did not answer {name!r} in "
                                      f"{timeout:.0f} s") from None
        finally:
            self._calls.pop(call_id, None)
        if not ok:
            raise EngineDeadError(value) if isinstance(value, str) else value
        return value

    def stats(self, timeout: float = 60.0) -> EngineStats:
        """The engine's counters, read between two steps in the engine process."""
        return self._call("stats", timeout)

    def check_invariants(self) -> None:
        ok = self._call("check_invariants", 60.0)
        assert ok is None

    def on_death(self, callback: Callable[[str], None]) -> None:
        """Run ``callback(cause)`` (on the reader thread) if the engine process dies."""
        self._death_callbacks.append(callback)

    def stop(self) -> None:
        """Finish the step in flight, shut the engine down and reap the process."""
        self._stopped = True
        self._finalizer()
        self._reader.join(timeout=5)
        self._close_sockets()

    def _close_sockets(self) -> None:
        with self._lock:
            self._push.close(linger=0)
        self._ctx.destroy(linger=0)

    def _check_alive(self) -> None:
        if self.error is not None:
            raise self.error
        if self._stopped:
            raise EngineDeadError("the engine has been shut down")

    # ------------------------------------------------------------ reader thread
    def _read(self) -> None:
        cause = None
        try:
            while True:
                if not self._pull.poll(READER_POLL_MS):
                    if self.proc.poll() is not None:
                        break
                    continue
                frames = self._pull.recv_multipart()
                kind = frames[0]
                if kind == wire.OUT:
                    sinks = self._sinks
                    for d in wire.decode_deltas(frames[1]):
                        sink = sinks.get(d.request_id)
                        if sink is None:
                            continue
                        if d.finished:
                            del sinks[d.request_id]
                        sink(d)
                elif kind == wire.REPLY:
                    box = self._calls.get(wire.decode_int(frames[1]))
                    if box is not None:
                        box.put(wire.decode_reply(frames[2]))
                elif kind == wire.DEAD:
                    cause = str(wire.load(frames[1]))
        except zmq.ZMQError:  # the sockets were closed by stop()
            if self._stopped:
                return
            raise
        code = _wait(self.proc, 5)
        if self._stopped and code == 0:
            return
        text = f"the engine process (pid {self.proc.pid}) exited with code {code}"
        if code is not None and code < 0:
            text = f"the engine process (pid {self.proc.pid}) was killed by signal {-code}"
        if cause:
            text += f": {cause}"
        self._die(text)

    def _die(self, text: str) -> None:
        log.error("%s", text)
        self.error = EngineDeadError(text)
        sinks, self._sinks = self._sinks, {}
        for rid, sink in sinks.items():
            with contextlib.suppress(Exception):
                sink(TokenDelta(rid, [], None, True, "abort", error=text))
        for box in list(self._calls.values()):
            box.put((False, text))
        for cb in self._death_callbacks:
            with contextlib.suppress(Exception):
                cb(text)
