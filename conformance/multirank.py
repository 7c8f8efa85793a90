"""Launching the multi-rank collectives stage: one subprocess per rank, rendezvous over a
free localhost port, results read back from JSON files. A rank that hangs past the timeout or
dies without writing results is a *crash/hang* (the only reasons the suite skips)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile

TIMEOUT_S = 240


class StageAborted(Exception):
    """The stage crashed or hung; ``kind`` is "crash" or "hang"."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_stage(platform: str, world_size: int, ops: list[str], dtypes: list[str], seed: int = 0,
              timeout_s: float = TIMEOUT_S) -> dict[tuple[str, str, int], dict]:
    """Run the collectives on ``world_size`` ranks; records keyed by (op, dtype, rank)."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="anyware-collectives-") as tmp:
        procs = []
        for rank in range(world_size):
            env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                       RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                       OMP_NUM_THREADS="1")
            log = open(os.path.join(tmp, f"rank{rank}.log"), "w")  # noqa: SIM115 - closed below
            cmd = [sys.executable, "-m", "anyware_conformance.collective_worker",
                   "--platform", platform, "--rank", str(rank), "--world-size", str(world_size),
                   "--ops", ",".join(ops), "--dtypes", ",".join(dtypes), "--seed", str(seed),
                   "--out", os.path.join(tmp, f"rank{rank}.json")]
            procs.append((subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), log))
        hung = False
        for proc, _log in procs:
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                hung = True
        for proc, log in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()

        def tail(rank: int) -> str:
            with open(os.path.join(tmp, f"rank{rank}.log")) as f:
                return f.read()[-1500:]

        if hung:
            raise StageAborted("hang", f"{world_size} ranks did not finish in {timeout_s}s; "
                               f"rank 0 log: {tail(0)}")
        records = {}
        for rank, (proc, _log) in enumerate(procs):
            path = os.path.join(tmp, f"rank{rank}.json")
            if proc.returncode != 0 or not os.path.exists(path):
                raise StageAborted("crash", f"rank {rank} exited with {proc.returncode}: {tail(rank)}")
            with open(path) as f:
                for rec in json.load(f):
                    records[(rec["op"], rec["dtype"], rank)] = rec
        return records
