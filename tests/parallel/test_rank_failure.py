"""A rank that dies takes the group down with an error naming it, and no rank outlives the
engine (CPU ranks, gloo)."""

from __future__ import annotations

import os
import signal
import time

import pytest
from anyware import Engine, SamplingParams
from anyware.engine.errors import EngineDeadError

from tests.parallel.conftest import ENGINE, alive, wait_gone

PARAMS = SamplingParams(max_new_tokens=4, temperature=0.0)


def test_killed_rank_is_named_within_the_timeout(model_dir):
    engine = Engine(str(model_dir("llama")), tensor_parallel_size=2, **ENGINE)
    try:
        assert len(engine.generate([[5, 6, 7]], PARAMS)[0].outputs[0].token_ids) == 4
        (rank, proc), = engine.core.group.children
        os.kill(proc.pid, signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(EngineDeadError, match=r"rank 1 \(pid \d+\) was killed by SIGKILL"):
            engine.generate([[5, 6, 7]], PARAMS)
        # named before any collective timed out (dist_timeout), not by the timeout itself
        assert time.monotonic() - started < ENGINE["dist_timeout"]
    finally:
        engine.shutdown()
    assert rank == 1 and not alive(proc.pid)


def test_clean_shutdown_stops_every_rank(model_dir):
    engine = Engine(str(model_dir("llama")), tensor_parallel_size=2, **ENGINE)
    (_, proc), = engine.core.group.children
    engine.generate([[5, 6, 7]], PARAMS)
    engine.shutdown()
    assert proc.exitcode == 0  # stopped by rank 0, not killed
    assert wait_gone([proc.pid], 5) == []
