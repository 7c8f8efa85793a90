"""`RankGroup`: the process group of a tensor-parallel engine, seen from one rank.

* The **compute group** is ``torch.distributed``'s default group with the platform's backend
  (``Platform.dist_backend``) and the ``--dist-timeout``: the model's collectives run on it
  through the platform's ``Communicator``. A collective that a dead rank never joins fails
  (the peer's sockets close) or times out; the error names the rank when this process
  spawned it.
* The **control channel** is a host-side group (gloo: plain sockets) where rank 0 broadcasts
  each step's :class:`~anyware.executor.plan.StepPlan`, pickled, in one fixed-size broadcast
  (two for a large prefill plan). It has
  no practical timeout: an idle server's ranks wait on it for the next request as long as
  it takes.

Rank 0 watches the ranks it spawned (a thread polls their exit codes); a spawned rank
watches its parent and exits when the parent is gone, so no rank outlives the engine.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from anyware.distributed.placement import Placement
from anyware.plugin.errors import AnywareError

log = logging.getLogger("anyware")

CONTROL_TIMEOUT = timedelta(days=30)  # idle waits for the next step are not failures
WATCH_INTERVAL_S = 0.5
JOIN_TIMEOUT_S = 30.0
CONTROL_BYTES = 8192  # the control channel's fixed broadcast (length header + pickled plan)
_HEADER = 8


class RankFailedError(AnywareError, RuntimeError):
    """A rank of the group died or a collective failed: the whole group is down."""


def _exit_text(code: int | None) -> str:
    if code is None:
        return "is unresponsive"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class RankGroup:
    """One rank's view of the group: ``start`` (spawning its local ranks first when the
    placement says so), then ``send``/``recv`` step plans, ``check`` for dead ranks,
    ``close``."""

    def __init__(self, placement: Placement, backend: str, timeout_s: float) -> None:
        self.placement = placement
        self.rank, self.world_size = placement.rank, placement.world_size
        self.backend, self.timeout_s = backend, timeout_s
        self.children: list[tuple[int, Any]] = []  # (rank, multiprocessing.Process)
        self.failure: str | None = None
        self.control = None
        self._closed = False
        self._stop_watch = threading.Event()
        self._ready: list[Any] = []  # one multiprocessing.Event per spawned rank
        self._control_buf = None

    # ------------------------------------------------------------ start
    @classmethod
    def start(cls, placement: Placement, backend: str, timeout_s: float,
              target: Callable[..., None] | None = None, args: tuple = ()) -> RankGroup:
        """Spawn ``placement.spawn``'s ranks (each runs ``target(*args, child_placement,
        parent_pid, ready=event)`` in a fresh interpreter and sets ``event`` just before it
        joins), then join the process group."""
        group = cls(placement, backend, timeout_s)
        if placement.spawn:
            if target is None:
                raise ValueError("spawning ranks needs a target")
            group._spawn(target, args)
        try:
            group._init_watching_children()
        except BaseException as exc:
            group._terminate_children()
            raise RankFailedError(group._describe(f"the process group of {group.world_size} "
                                                  f"ranks did not form: {exc}")) from exc
        return group

    def _spawn(self, target: Callable[..., None], args: tuple) -> None:
        import multiprocessing

        import torch.multiprocessing as mp

        if multiprocessing.current_process().daemon:
            raise RankFailedError(
                "the tensor-parallel ranks cannot be spawned from a daemonic process (Python "
                "forbids its children); start the engine in a non-daemon process, or launch "
                "the ranks with torchrun")
        ctx = mp.get_context("spawn")
        for rank, local_rank in self.placement.spawn:
            child = self.placement.for_child(rank, local_rank)
            ready = ctx.Event()  # set by the rank just before it joins the group
            proc = ctx.Process(target=target, args=(*args, child, os.getpid()),
                               kwargs={"ready": ready}, name=f"anyware-rank{rank}", daemon=True)
            self._ready.append(ready)
            proc.start()
            self.children.append((rank, proc))
        threading.Thread(target=self._watch_children, name="anyware-rank-watch",
                         daemon=True).start()

    def _init_watching_children(self) -> None:
        """``_init``, once every spawned rank is about to join: a spawned rank that dies
        before (an import error, a bad setting) fails the start at once, naming it, instead
        of after the rendezvous timeout."""
        deadline = time.monotonic() + self.timeout_s
        while not all(ready.is_set() for ready in self._ready):
            dead = [(r, p) for r, p in self.children if p.exitcode is not None]
            if dead:
                rank, proc = dead[0]
                raise RuntimeError(f"rank {rank} (pid {proc.pid}) {_exit_text(proc.exitcode)} "
                                   "before the group formed; its log above says why")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the spawned ranks did not start within {self.timeout_s} s")
            time.sleep(0.05)
        self._init()

    def _init(self) -> None:
        import torch.distributed as dist

        p = self.placement
        dist.init_process_group(self.backend, init_method=p.init_method, rank=p.rank,
                                world_size=p.world_size,
                                timeout=timedelta(seconds=self.timeout_s))
        self.control = dist.new_group(backend="gloo", timeout=CONTROL_TIMEOUT)
        log.info("rank %d of %d joined the group (%s, %s)", p.rank, p.world_size,
                 self.backend, p.init_method)

    # ------------------------------------------------------------ watching
    def _watch_children(self) -> None:
        while not self._stop_watch.wait(WATCH_INTERVAL_S):
            for rank, proc in self.children:
                if proc.exitcode is not None and self.failure is None and not self._closed:
                    self.failure = f"rank {rank} (pid {proc.pid}) {_exit_text(proc.exitcode)}"
                    log.error("tensor-parallel %s; the engine stops", self.failure)

    def check(self) -> None:
        """Raise :class:`RankFailedError` when a spawned rank has died."""
        if self.failure is not None:
            raise RankFailedError(self._describe(None))

    def _describe(self, detail: str | None) -> str:
        for rank, proc in self.children:  # a collective failed: find out who is gone
            if proc.exitcode is not None and self.failure is None:
                self.failure = f"rank {rank} (pid {proc.pid}) {_exit_text(proc.exitcode)}"
        who = self.failure or "a peer rank failed"
        text = f"tensor-parallel group of {self.world_size} ranks is down: {who}"
        return f"{text} ({detail})" if detail else text

    def explain(self, exc: Exception) -> Exception:
        """``exc`` as a :class:`RankFailedError` naming the dead rank when a rank died or a
        collective failed; any other error (rank 0's own) is returned unchanged."""
        deadline = time.monotonic() + 2.0  # give a dying peer's exit a moment to register
        while (self.children and time.monotonic() < deadline
               and all(p.exitcode is None for _, p in self.children)):
            if not _collective_error(exc):
                break
            time.sleep(0.05)
        if self.failure is None and not _collective_error(exc) and all(
                p.exitcode is None for _, p in self.children):
            return exc
        return RankFailedError(self._describe(f"{type(exc).__name__}: {exc}"))

    # ------------------------------------------------------------ the control channel
    def send(self, obj: Any) -> None:
        """Rank 0: broadcast ``obj`` (a step plan; ``None`` stops the other ranks). One
        broadcast of a fixed-size buffer when the pickled object fits (every decode plan up
        to a few hundred requests), a second one for the rest: a broadcast costs about the
        same for 8 B and 8 KiB, so one per step halves ``broadcast_object_list``'s two."""
        import torch

        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        with torch.inference_mode():  # the buffer is an inference tensor (made in a step)
            self._send(data)

    def _send(self, data: bytes) -> None:
        import torch

        buf = self._buffer()
        buf[:_HEADER].copy_(torch.tensor([len(data)], dtype=torch.int64).view(torch.uint8))
        head = data[: CONTROL_BYTES - _HEADER]
        buf[_HEADER : _HEADER + len(head)].copy_(torch.frombuffer(bytearray(head), dtype=torch.uint8))
        self._broadcast(buf)
        if len(data) > len(head):
            rest = torch.frombuffer(bytearray(data[len(head):]), dtype=torch.uint8)
            self._broadcast(rest)

    def recv(self) -> Any:
        """Another rank: wait for rank 0's next :meth:`send`."""
        import torch

        with torch.inference_mode():
            return pickle.loads(self._recv())

    def _recv(self) -> bytes:
        import torch

        buf = self._buffer()
        self._broadcast(buf)
        size = int(buf[:_HEADER].view(torch.int64)[0])
        head = min(size, CONTROL_BYTES - _HEADER)
        data = bytes(buf[_HEADER : _HEADER + head].numpy())
        if size > head:
            rest = torch.empty(size - head, dtype=torch.uint8)
            self._broadcast(rest)
            data += bytes(rest.numpy())
        return data

    def _buffer(self):
        import torch

        if self._control_buf is None:
            self._control_buf = torch.zeros(CONTROL_BYTES, dtype=torch.uint8)
        return self._control_buf

    def _broadcast(self, t) -> None:
        import torch.distributed as dist

        dist.broadcast(t, src=0, group=self.control)

    # ------------------------------------------------------------ shutdown
    def close(self) -> None:
        """Rank 0: stop the other ranks (when they are alive) and wait for its children;
        every rank: leave the process group. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop_watch.set()
        import torch.distributed as dist

        if self.rank == 0 and self.failure is None and dist.is_initialized():
            try:
                self.send(None)
            except Exception as exc:  # a peer is already gone
                log.warning("could not stop the other ranks cleanly: %s", exc)
        self._join_children()
        if dist.is_initialized():
            dist.destroy_process_group()

    def _join_children(self) -> None:
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        for _, proc in self.children:
            proc.join(max(0.0, deadline - time.monotonic()))
        self._terminate_children()

    def _terminate_children(self) -> None:
        for rank, proc in self.children:
            if proc.is_alive():
                log.warning("rank %d (pid %d) did not exit; killing it", rank, proc.pid)
                proc.kill()
                proc.join(5)


def _collective_error(exc: BaseException) -> bool:
    """Whether ``exc`` came from a collective (a backend error, a peer gone, a timeout)."""
    import torch.distributed as dist

    kinds = tuple(k for k in (getattr(dist, "DistError", None),) if k is not None)
    text = str(exc).lower()
    return (isinstance(exc, kinds) if kinds else False) or any(
        s in text for s in ("connection closed", "connection reset", "timed out", "timeout",
                            "processgroup", "broken pipe", "peer"))


def watch_parent(parent_pid: int) -> None:
    """A spawned rank: exit at once when the process that spawned it is gone (its parent pid
    changes), so no rank outlives its engine."""
    def run() -> None:
        while True:
            time.sleep(WATCH_INTERVAL_S)
            if os.getppid() != parent_pid:
                log.error("rank 0 (pid %d) is gone; this rank exits", parent_pid)
                os._exit(1)

    threading.Thread(target=run, name="anyware-parent-watch", daemon=True).start()


def follow(group: RankGroup, step: Callable[[Any], None]) -> None:
    """The loop of a rank other than 0: run ``step(plan)`` for every plan rank 0 sends, until
    it sends ``None``. A failed collective raises :class:`RankFailedError`."""
    while True:
        try:
            plan = group.recv()
        except Exception as exc:
            raise RankFailedError(f"rank {group.rank}: lost rank 0 of the tensor-parallel group "
                                  f"({type(exc).__name__}: {exc})") from exc
        if plan is None:
            return
        try:
            step(plan)
        except Exception as exc:
            raise RankFailedError(f"rank {group.rank}: a step failed, the group is down "
                                  f"({type(exc).__name__}: {exc})") from exc
