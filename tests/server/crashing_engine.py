"""``python -m tests.server.crashing_engine``: the engine process whose step raises once a
request has produced a few tokens (tests/server/test_process_split.py swaps it in through
``anyware.engine.remote.ENGINE_MODULE``)."""

from anyware.engine import process
from anyware.engine.core import EngineCore

CRASH_AFTER_STEPS = 5
_step = EngineCore.step
_count = [0]


def _crashing_step(self):
    _count[0] += 1
    if _count[0] > CRASH_AFTER_STEPS:
        raise RuntimeError("injected fault: step failed")
    return _step(self)


EngineCore.step = _crashing_step

if __name__ == "__main__":
    process.main()
