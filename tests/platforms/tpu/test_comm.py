"""The JAX communicator between two JAX processes (multi-controller, gloo on the CPU), each
with 4 virtual CPU devices: what the conformance collectives tier does not cover (uneven
all_to_all splits, all_gather on another dim, broadcast from a non-zero rank). The even
collectives in both dtypes are the conformance tier's (test_conformance_tpu.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from anyware_conformance.multirank import free_port

WORKER = Path(__file__).with_name("comm_worker.py")


ATTEMPT_S = 90  # the pair takes ~5 s; a stuck rendezvous is killed and retried once


def _run_pair(world: int) -> list[tuple[int | None, str]]:
    """Both ranks on a fresh port; on a hang both are killed (no orphans), returncode None."""
    port, procs = free_port(), []
    for rank in range(world):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), OMP_NUM_THREADS="1",
                   XLA_FLAGS="--xla_force_host_platform_device_count=4")
        procs.append(subprocess.Popen([sys.executable, str(WORKER), str(rank), str(world)],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    results = []
    try:
        for p in procs:
            try:
                out = p.communicate(timeout=ATTEMPT_S)[0]
                results.append((p.returncode, out))
            except subprocess.TimeoutExpired:
                results.append((None, ""))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return results


@pytest.mark.slow
def test_jax_communicator_two_processes(tmp_path):
    world = 2
    results = _run_pair(world)
    if any(code is None for code, _ in results):
        # the port free_port() returned can be taken by another test before the coordinator
        # binds it (xdist runs servers beside this), leaving both ranks waiting: once more
        results = _run_pair(world)
    for rank, (code, out) in enumerate(results):
        assert code == 0, f"rank {rank} ({'hung' if code is None else f'exit {code}'}):\n{out[-3000:]}"
        assert f"ok {rank}" in out
