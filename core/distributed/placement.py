"""`Placement`: which rank this process is and how the group meets.

Two ways to start a group of ``tp`` ranks:

* **under torchrun** (or any launcher that sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
  ``MASTER_ADDR``, ``MASTER_PORT``): every rank is its own process started by the launcher;
  the group meets through the ``env://`` rendezvous and ``WORLD_SIZE`` must equal ``tp``.
* **spawned** (``anyware serve --tp N``): the process started by the user is rank
  ``node_rank * N / nnodes`` and spawns the other ranks of its node. With one node the group
  meets on a free local port; with several, at ``--dist-init-addr HOST:PORT`` (node 0's
  address), as SGLang's ``--nnodes/--node-rank/--dist-init-addr`` do.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from anyware.plugin.errors import AnywareError

ENV_KEYS = ("RANK", "WORLD_SIZE")


class PlacementError(AnywareError, ValueError):
    """The parallel settings do not describe a valid group (the message says what to change)."""


@dataclass(frozen=True)
class Placement:
    """rank / world_size / local_rank of this process; ``init_method`` for
    ``init_process_group``; ``spawn``: ``(rank, local_rank)`` of each rank this process
    starts; ``from_env``: joined a launcher's rendezvous."""

    rank: int
    world_size: int
    local_rank: int
    init_method: str
    spawn: tuple[tuple[int, int], ...] = field(default=())
    from_env: bool = False

    def for_child(self, rank: int, local_rank: int) -> Placement:
        return Placement(rank, self.world_size, local_rank, self.init_method)


def launched_by_env(environ: Mapping[str, str] | None = None) -> bool:
    """Whether a launcher (torchrun, SLURM/Kubernetes wrappers) set the env rendezvous."""
    env = os.environ if environ is None else environ
    return all(k in env for k in ENV_KEYS) and int(env["WORLD_SIZE"]) > 1


def env_rank(environ: Mapping[str, str] | None = None) -> int:
    """This process's rank under an env rendezvous (0 without one)."""
    env = os.environ if environ is None else environ
    return int(env["RANK"]) if launched_by_env(env) else 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resolve_placement(tp: int, nnodes: int = 1, node_rank: int = 0,
                      dist_init_addr: str | None = None,
                      environ: Mapping[str, str] | None = None) -> Placement:
    """Where this process sits in a group of ``tp`` ranks (see the module doc)."""
    env = os.environ if environ is None else environ
    if tp < 1:
        raise PlacementError(f"--tensor-parallel-size must be >= 1, not {tp}")
    if launched_by_env(env):
        world = int(env["WORLD_SIZE"])
        if world != tp:
            raise PlacementError(
                f"the launcher started {world} processes (WORLD_SIZE) but --tensor-parallel-size "
                f"is {tp}; pass --tp {world} or start {tp} processes (torchrun --nproc-per-node)")
        rank = int(env["RANK"])
        return Placement(rank, world, int(env.get("LOCAL_RANK", rank)), "env://", from_env=True)
    if nnodes < 1 or not 0 <= node_rank < nnodes:
        raise PlacementError(f"--node-rank {node_rank} is not in [0, --nnodes {nnodes})")
    if tp % nnodes:
        raise PlacementError(f"--tp {tp} does not split over --nnodes {nnodes}")
    per_node = tp // nnodes
    if nnodes > 1 and not dist_init_addr:
        raise PlacementError("--nnodes > 1 needs --dist-init-addr HOST:PORT (node 0's address, "
                             "the same on every node)")
    addr = dist_init_addr or f"127.0.0.1:{free_port()}"
    if ":" not in addr:
        raise PlacementError(f"--dist-init-addr {addr!r}: expected HOST:PORT")
    first = node_rank * per_node
    spawn = tuple((first + i, i) for i in range(1, per_node))
    return Placement(first, tp, 0, f"tcp://{addr}", spawn)
