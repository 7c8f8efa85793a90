"""The engine process: an :class:`EngineCore` and its step loop in a child process of its own,
fed and drained over the sockets of :mod:`anyware.engine.wire`.

The front end (:class:`anyware.engine.remote.ProcessEngineLoop`) tokenizes, detokenizes and
speaks HTTP; this process only schedules and steps, so neither waits on the other's
interpreter lock. Each step's deltas leave as one message. The process ignores SIGINT and
SIGTERM (a Ctrl-C in a terminal reaches the whole process group: the front end decides when
the engine stops, after draining), and exits by itself when its parent disappears."""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import sys
import threading
import time
import traceback

import zmq
from anyware.engine import wire
from anyware.engine.config import EngineConfig
from anyware.request.request import Request

log = logging.getLogger("anyware")

IDLE_POLL_MS = 200  # idle: how often to look for a vanished parent


class _EngineServer:
    def __init__(self, core, pull: zmq.Socket, push: zmq.Socket, debug: bool) -> None:
        self.core = core
        self.pull = pull
        self.push = push
        self.debug = debug
        self.outbox: list = []
        self.running = True

    def handle(self, frames: list[bytes]) -> None:
        kind = frames[0]
        core = self.core
        if kind == wire.ADD:
            sink = self.outbox.append
            for s in wire.decode_specs(frames[1]):
                core.add(Request(s.rid, s.prompt_ids, s.params, s.seed, sink,
                                 prompt_lp_next=s.prompt_lp_next))
        elif kind == wire.ABORT:
            for rid in wire.decode_rids(frames[1]):
                core.abort(rid)
        elif kind == wire.CALL:
            call_id, name = wire.decode_int(frames[1]), wire.decode_str(frames[2])
            try:
                if name not in wire.CALLS:
                    raise ValueError(f"unknown engine call {name!r}")
                reply = (True, getattr(core, name)())
            except Exception as exc:
                reply = (False, repr(exc))
            self.push.send_multipart([wire.REPLY, wire.encode(call_id), wire.encode(reply)])
        elif kind == wire.STOP:
            self.running = False

    def drain_inbox(self, block_ms: int) -> bool:
        """Handle every message waiting (waiting up to ``block_ms`` for the first); whether
        any came."""
        if block_ms and not self.pull.poll(block_ms):
            return False
        got = False
        while True:
            try:
                frames = self.pull.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return got
            got = True
            self.handle(frames)

    def flush(self) -> None:
        if self.outbox:
            self.push.send_multipart([wire.OUT, wire.encode(self.outbox)])
            self.outbox.clear()

    def run(self, parent_pid: int) -> None:
        core = self.core
        while self.running:
            busy = core.has_work()
            if busy:
                self.drain_inbox(0)
            else:
                if self.debug:
                    core.check_invariants()
                if not self.drain_inbox(IDLE_POLL_MS):
                    if os.getppid() != parent_pid:
                        log.error("engine process: the front end is gone; exiting")
                        return
                    continue
            if not self.running:
                break
            core.step()
            self.flush()
        self.flush()


def engine_main(cfg: EngineConfig, in_addr: str, out_addr: str, parent_pid: int,
                debug: bool, log_level: int) -> None:
    """The engine process's body (``python -m anyware.engine.process``, see ``main``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, 0)  # unbounded both ways: the engine loop never blocks on a send
    pull.connect(in_addr)
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 5000)
    push.setsockopt(zmq.SNDHWM, 0)
    push.connect(out_addr)
    code = 0
    core = None
    try:
        from anyware.engine.core import EngineCore

        t0 = time.monotonic()
        try:
            core = EngineCore(cfg)
        except Exception as exc:  # a load error: the front end re-raises it as it is
            try:
                payload = wire.dump(exc)
            except Exception:
                payload = wire.dump(RuntimeError(f"{type(exc).__name__}: {exc}"))
            push.send_multipart([wire.DEAD, payload])
            code = 1
            return
        log.info("engine process %d ready in %.1f s", os.getpid(), time.monotonic() - t0)
        push.send_multipart([wire.READY, wire.dump(wire.EngineInfo.of(core, os.getpid()))])
        server = _EngineServer(core, pull, push, debug)
        # the loop runs in a thread, as the in-process EngineLoop's does: the model was built on
        # this thread and steps on that one in both layouts (measured on the 2-core CPU host:
        # the same 800-request CPU workload took 1.0-1.4 s stepped from a thread and 52-55 s
        # from the main thread, where torch's two OpenMP threads contend with the host)
        failure: list[BaseException] = []

        def loop() -> None:
            try:
                server.run(parent_pid)
            except BaseException as exc:
                failure.append(exc)

        thread = threading.Thread(target=loop, name="anyware-engine-loop")
        thread.start()
        thread.join()
        if failure:
            exc = failure[0]
            log.error("engine loop crashed", exc_info=exc)
            text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            push.send_multipart([wire.DEAD, wire.dump(text)])
            code = 1
            return
    finally:
        if core is not None and code == 0:
            with contextlib.suppress(Exception):
                core.shutdown()
        pull.close(linger=0)
        push.close()
        ctx.term()
        if code:
            os._exit(code)  # skip atexit hooks of a broken runtime; exit status says it failed


def main() -> None:
    """``python -m anyware.engine.process IN_ADDR OUT_ADDR PARENT_PID DEBUG LOG_LEVEL`` with the
    pickled :class:`EngineConfig` on standard input. A plain interpreter rather than a
    ``multiprocessing`` spawn: the caller's main module is never re-imported, so a script
    without an ``if __name__ == "__main__"`` guard can start an engine process."""
    in_addr, out_addr, parent_pid, debug, log_level = sys.argv[1:6]
    cfg = pickle.load(sys.stdin.buffer)
    sys.stdin.close()
    engine_main(cfg, in_addr, out_addr, int(parent_pid), debug == "1", int(log_level))


if __name__ == "__main__":
    main()
