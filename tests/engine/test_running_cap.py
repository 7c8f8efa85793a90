"""The running-request cap: sized from the KV pool when the configuration leaves it unset
(``anyware.memory.running_cap``), the configured one otherwise; the page table, the scheduler
and the reports all use the value in force."""

from __future__ import annotations

import pytest
from anyware import Engine, SamplingParams
from anyware.memory import running_cap
from anyware.memory.running_cap import (
    AUTO_MAX,
    AUTO_MIN,
    AUTO_MIN_ROW_BYTES,
    TOKENS_PER_REQUEST,
    auto_max_running,
    max_running_bound,
)

from tests.engine.conftest import PLATFORM, model_dir  # noqa: F401 - the fixture


def test_auto_rule():
    long, kv8b = 131072, 128 << 10  # the 8B shape: 128 KiB of bf16 KV per token
    assert auto_max_running(0, long, kv8b) == AUTO_MIN
    assert auto_max_running(AUTO_MIN * TOKENS_PER_REQUEST - 1, long, kv8b) == AUTO_MIN
    assert auto_max_running(844544, long, kv8b) == 412  # its bf16 pool on an H200
    assert auto_max_running(1_760_000, long, kv8b // 2) == 859  # and its fp8 pool
    assert auto_max_running(10**9, long, kv8b) == AUTO_MAX
    # no request is longer than the context (512 tokens of 128 KiB: 64 MiB per row)
    assert auto_max_running(300 * 512, 512, kv8b * 2) == 300
    assert max_running_bound(None) == AUTO_MAX and max_running_bound(7) == 7


def test_host_bound_rows_keep_the_floor():
    """A small model's rows read too little KV per step for more of them to pay for their host
    time (W6: qwen2.5-0.5b, 12 KiB per token, a 2.1M-token pool on an H200)."""
    assert auto_max_running(2_097_152, 32768, 12 << 10) == AUTO_MIN
    # the threshold: 64 MiB of KV at the 2,048-token footprint
    assert auto_max_running(10**9, 32768, AUTO_MIN_ROW_BYTES // TOKENS_PER_REQUEST) == AUTO_MAX
    assert auto_max_running(10**9, 32768, AUTO_MIN_ROW_BYTES // TOKENS_PER_REQUEST - 1) == AUTO_MIN


def _engine(model_dir, **kw):  # noqa: F811
    # a context above the 2,048-token footprint: the cap can then grow past AUTO_MIN
    return Engine(str(model_dir("llama")), platform=PLATFORM, show_progress=False,
                  page_size=16, **{"context_len": 4096, **kw})


def _token_bytes(engine) -> int:
    worker = engine.core.worker
    return worker.pool.bytes // (worker.num_pages * worker.page_size)


def test_a_small_pool_keeps_the_floor(model_dir):  # noqa: F811
    with _engine(model_dir, kv_cache_bytes=1 << 20) as engine:
        core = engine.core
        assert engine.config.max_running_requests is None
        assert core.max_running_requests == AUTO_MIN == engine.info.max_running_requests
        assert core.scheduler.cfg.max_running_requests == AUTO_MIN
        assert core.worker.page_table.table.shape[0] == AUTO_MIN
        assert core.worker.runner.max_requests == AUTO_MIN
        # the structures sized before the pool allow the bound
        assert core.worker.attention.spec.max_batch_size == AUTO_MAX


def test_a_large_pool_raises_the_cap(model_dir, monkeypatch):  # noqa: F811
    # the tiny model's rows are host-bound by the rule's bytes: lift that bound here
    monkeypatch.setattr(running_cap, "AUTO_MIN_ROW_BYTES", 0)
    with _engine(model_dir, kv_cache_bytes=1 << 20) as small:
        per_token = _token_bytes(small)
        context = small.core.model_config.context_len
    rows = 300
    footprint = min(TOKENS_PER_REQUEST, context)
    with _engine(model_dir, kv_cache_bytes=per_token * (rows * footprint + 16)) as engine:
        core = engine.core
        assert core.max_running_requests == rows
        assert core.worker.page_table.table.shape[0] == rows
        # the pool is the budget's (below AUTO_MIN full-context requests' worth)
        assert core.worker.num_pages * 16 >= rows * footprint
        out = engine.generate([[5, 6, 7]], SamplingParams(max_new_tokens=3, temperature=0,
                                                          ignore_eos=True))
        assert len(out[0].outputs[0].token_ids) == 3


def test_a_short_context_keeps_the_floor_and_the_pool(model_dir):  # noqa: F811
    """At a context of at most 2,048 tokens the pool holds at most AUTO_MIN whole requests
    (as with the fixed cap), so the cap stays AUTO_MIN and the pool does not grow."""
    with _engine(model_dir, context_len=512, kv_cache_bytes=1 << 30) as engine:
        assert engine.core.max_running_requests == AUTO_MIN
        assert engine.core.worker.num_pages == AUTO_MIN * (512 // 16) + 1


def test_a_configured_cap_is_kept(model_dir):  # noqa: F811
    with _engine(model_dir, kv_cache_bytes=1 << 20, max_running_requests=3) as engine:
        core = engine.core
        assert core.max_running_requests == 3 == core.scheduler.cfg.max_running_requests
        assert core.worker.page_table.table.shape[0] == 3
        assert core.worker.attention.spec.max_batch_size == 3


def test_config_refuses_a_cap_below_one(model_dir):  # noqa: F811
    from anyware.request.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError, match="max_running_requests"):
        _engine(model_dir, max_running_requests=0)
