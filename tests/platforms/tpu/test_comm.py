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


@pytest.mark.slow
def test_jax_communicator_two_processes(tmp_path):
    port, world = free_port(), 2
    procs = []
    for rank in range(world):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), OMP_NUM_THREADS="1",
                   XLA_FLAGS="--xla_force_host_platform_device_count=4")
        procs.append(subprocess.Popen([sys.executable, str(WORKER), str(rank), str(world)],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    outs = [p.communicate(timeout=240)[0] for p in procs]
    for rank, (p, out) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, f"rank {rank}:\n{out[-3000:]}"
        assert f"ok {rank}" in out
