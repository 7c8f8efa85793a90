"""`EngineLoop`: runs `EngineCore.step` in a background thread, fed through a queue, so
tokenization, detokenization and HTTP never wait on the device and vice versa."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import weakref
from collections.abc import Callable

from anyware.engine.core import EngineCore
from anyware.engine.errors import EngineDeadError
from anyware.engine.outputs import EngineStats
from anyware.request.delta import TokenDelta
from anyware.request.request import Request

log = logging.getLogger("anyware")


def _stop_thread(inbox: queue.SimpleQueue, thread: threading.Thread) -> None:
    if thread.is_alive():
        inbox.put(("stop", None))
        thread.join(timeout=30)


class EngineLoop:
    def __init__(self, core: EngineCore, debug_invariants: bool = False) -> None:
        self.core = core
        self.debug = debug_invariants
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.error: BaseException | None = None
        self._death_callbacks: list[Callable[[str], None]] = []
        self._thread = threading.Thread(target=self._run, name="anyware-engine", daemon=True)
        self._thread.start()
        # a script that never calls shutdown(): stop the thread between steps at interpreter
        # exit, before the runtime tears down under a step still running (which aborts the
        # process with "terminate called without an active exception")
        weakref.finalize(self, _stop_thread, self._inbox, self._thread)

    # ------------------------------------------------------------ called from any thread
    def submit(self, reqs: list[Request]) -> None:
        """Add requests atomically (they are scheduled together)."""
        self._check_alive()
        self._inbox.put(("add", reqs))

    def abort(self, rid: str) -> None:
        if self.error is None:
            self._inbox.put(("abort", rid))

    def call(self, fn: Callable[[EngineCore], object], timeout: float = 60.0):
        """Run ``fn(core)`` on the engine thread between steps and return its result."""
        self._check_alive()
        box: queue.SimpleQueue = queue.SimpleQueue()
        self._inbox.put(("call", (fn, box)))
        ok, value = box.get(timeout=timeout)
        if not ok:
            raise value
        return value

    def stats(self) -> EngineStats:
        return self.call(lambda core: core.stats())

    def check_invariants(self) -> None:
        self.call(lambda core: core.check_invariants())

    def on_death(self, callback: Callable[[str], None]) -> None:
        """Run ``callback(cause)`` (on the engine thread) if the loop crashes."""
        self._death_callbacks.append(callback)

    def stop(self) -> None:
        _stop_thread(self._inbox, self._thread)

    def _check_alive(self) -> None:
        if self.error is not None:
            raise EngineDeadError(f"the engine loop stopped: {self.error!r}") from self.error
        if not self._thread.is_alive():
            raise EngineDeadError("the engine has been shut down")

    # ------------------------------------------------------------ engine thread
    def _handle(self, kind: str, payload) -> bool:
        core = self.core
        if kind == "add":
            for req in payload:
                core.add(req)
        elif kind == "abort":
            core.abort(payload)
        elif kind == "call":
            fn, box = payload
            try:
                box.put((True, fn(core)))
            except Exception as exc:
                box.put((False, exc))
        elif kind == "stop":
            return False
        return True

    def _run(self) -> None:
        running = True
        try:
            while running:
                busy = self.core.has_work()
                if not busy and self.debug:
                    self.core.check_invariants()
                try:  # block only when idle
                    item = self._inbox.get(block=not busy)
                    while True:
                        running = self._handle(*item) and running
                        item = self._inbox.get_nowait()
                except queue.Empty:
                    pass
                if not running:
                    break
                self.core.step()
        except BaseException as exc:
            log.exception("engine loop crashed")
            self.error = exc
            self._fail_all(exc)
            for cb in self._death_callbacks:
                with contextlib.suppress(Exception):
                    cb(repr(exc))

    def _fail_all(self, exc: BaseException) -> None:
        sched = self.core.scheduler
        for req in list(sched.waiting) + list(sched.running):
            with contextlib.suppress(Exception):
                req.sink(TokenDelta(req.rid, [], None, True, "abort", error=repr(exc)))
        while True:  # requests still in the inbox
            try:
                kind, payload = self._inbox.get_nowait()
            except queue.Empty:
                break
            if kind == "add":
                for req in payload:
                    req.sink(TokenDelta(req.rid, [], None, True, "abort", error=repr(exc)))
            elif kind == "call":
                payload[1].put((False, EngineDeadError(repr(exc))))
