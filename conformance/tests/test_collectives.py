"""Tier collectives: all-reduce, all-gather, reduce-scatter, all-to-all, broadcast and barrier
through the platform's ``Communicator`` on several ranks (one process each, the platform's
``dist_backend``, env rendezvous on a free localhost port), compared per rank with the fp64
result. The stage runs once per world size; each test reads its records."""

from __future__ import annotations

import pytest
import torch
from anyware.plugin import COLLECTIVES
from anyware_conformance.inputs import DTYPES
from anyware_conformance.multirank import StageAborted, run_stage

WORLD_SIZES = (2, 4)

PARAMS = [
    pytest.param(op, dtype, ws, id=f"{op}-{dtype}-ws{ws}", marks=pytest.mark.anyware(
        tier="collectives", capability=f"collectives.{op}", needs=("dtype", "collective"),
        **({} if ws == 2 else {"profile": "full"})))
    for ws in WORLD_SIZES for op in COLLECTIVES for dtype in DTYPES
]


def _stage(harness, caps, world_size: int):
    cache = harness.__dict__.setdefault("_collective_stages", {})
    if world_size not in cache:
        dtypes = [d for d in DTYPES if getattr(torch, d) in caps.dtypes]
        ops = [op for op in COLLECTIVES if op in caps.collectives]
        try:
            cache[world_size] = run_stage(harness.name, world_size, ops, dtypes)
        except StageAborted as exc:
            cache[world_size] = exc
    return cache[world_size]


@pytest.mark.parametrize("op,dtype,world_size", PARAMS)
def test_collective(harness, caps, conf, op, dtype, world_size):
    stage = _stage(harness, caps, world_size)
    if isinstance(stage, StageAborted):
        pytest.skip(f"{stage.kind} of the {world_size}-rank stage: {stage}")
    for rank in range(world_size):
        rec = stage[(op, dtype, rank)]
        assert "exception" not in rec, f"rank {rank}: {op} raised {rec['exception']}"
        assert rec["calls_grew"], (
            f"rank {rank}: Communicator.calls did not increase for {op}: the platform's "
            "communicator did not run it"
        )
        if op == "barrier":
            continue
        assert rec["device_ok"], f"rank {rank}: {op} output on {rec['out_device']}"
        assert rec["shape_ok"], f"rank {rank}: {op} output shape {rec['shapes'][0]} != {rec['shapes'][1]}"
        conf.close(f"{op} on rank {rank}", torch.tensor(rec["actual"]), torch.tensor(rec["expected"]),
                   op=op, dtype=dtype, reduction=world_size)
