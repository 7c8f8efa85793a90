"""The engine in its own process (``Engine(engine_process=True)``, what ``anyware serve`` runs):
concurrent load with nothing lost and outputs identical to the in-process engine, client
disconnects that abort in the engine process, an engine process killed under load (health red,
5xx naming the cause, ``anyware serve`` exiting non-zero, no zombie), and SIGTERM draining."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time

import httpx
import pytest

from .conftest import _serve, serve_subprocess, wait_idle

N_CONCURRENT = 64
NEW_TOKENS = 8


def _prompt(i: int) -> list[int]:
    return [(7 * i + j) % 500 + 1 for j in range(3 + i % 11)]


async def _stream_generate(c: httpx.AsyncClient, i: int) -> tuple[list[int], str]:
    body = {"input_ids": _prompt(i), "stream": True,
            "sampling_params": {"max_new_tokens": NEW_TOKENS, "temperature": 0,
                                "ignore_eos": True}}
    ids, finish = [], None
    async with c.stream("POST", "/generate", json=body) as r:
        assert r.status_code == 200, await r.aread()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            item = json.loads(line[6:])
            assert "error" not in item, item
            ids += item["output_ids"]
            if item["finished"]:
                finish = item["meta_info"]["finish_reason"]
    return ids, finish


def _load(base_url: str) -> list[tuple[list[int], str]]:
    async def main():
        limits = httpx.Limits(max_connections=N_CONCURRENT)
        async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=120) as c:
            return await asyncio.gather(*(_stream_generate(c, i) for i in range(N_CONCURRENT)))
    return asyncio.run(main())


def test_concurrent_streams_match_in_process(split_server, server):
    split = _load(split_server.base_url)
    assert all(len(ids) == NEW_TOKENS and f == "length" for ids, f in split), split
    assert split == _load(server.base_url)  # greedy: identical to the in-process engine
    stats = wait_idle(split_server.engine)
    assert stats.generated_tokens >= N_CONCURRENT * NEW_TOKENS


def test_disconnect_aborts_in_the_engine_process(split_server):
    engine = split_server.engine
    before = wait_idle(engine)
    long = 900
    body = {"input_ids": [1, 2, 3], "stream": True,
            "sampling_params": {"max_new_tokens": long, "ignore_eos": True}}
    with httpx.Client(base_url=split_server.base_url, timeout=60) as c, c.stream(
            "POST", "/generate", json=body) as r:
        for n, _ in enumerate(r.iter_lines()):
            if n >= 4:  # still streaming: leaving the loop closes the iterator and the stream
                assert engine.stats().running == 1
                break
    after = wait_idle(engine)
    assert after.generated_tokens - before.generated_tokens < long, "not aborted"
    metrics = httpx.get(f"{split_server.base_url}/metrics").text
    assert 'anyware_request_finished_total{finished_reason="abort"}' in metrics


def _first_chunk_then_rest(url: str, body: dict, started: threading.Event, out: list) -> None:
    with httpx.Client(timeout=60) as c, c.stream("POST", url, json=body) as r:
        out.append(r.status_code)
        for line in r.iter_lines():
            if line.startswith("data: "):
                out.append(line[6:])
                started.set()
    started.set()


def test_engine_killed_health_red_and_5xx(model_dir):
    from anyware import Engine

    eng = Engine(model=str(model_dir), engine_process=True, show_progress=False)
    gen = (srv for srv in _serve(eng, None))
    srv = next(gen)
    try:
        started, events = threading.Event(), []
        body = {"input_ids": [1, 2], "stream": True,
                "sampling_params": {"max_new_tokens": 900, "ignore_eos": True}}
        t = threading.Thread(target=_first_chunk_then_rest,
                             args=(f"{srv.base_url}/generate", body, started, events))
        t.start()
        assert started.wait(60)
        os.kill(eng.info.pid, signal.SIGKILL)
        t.join(30)
        assert events[0] == 200 and events[-1] == "[DONE]", events[-3:]
        err = json.loads(events[-2])["error"]
        assert "killed by signal 9" in err["message"], err
        health = httpx.get(f"{srv.base_url}/health", timeout=10)
        assert health.status_code == 503 and "killed by signal 9" in health.text
        r = httpx.post(f"{srv.base_url}/generate", json={"input_ids": [1]}, timeout=10)
        assert r.status_code == 503 and "killed by signal 9" in r.json()["error"]["message"]
        assert eng.error is not None
    finally:
        next(gen, None)
        eng.shutdown()
    assert eng._loop.proc.poll() == -signal.SIGKILL  # reaped: no zombie


def _server_pids(port: int) -> int:
    return httpx.get(f"http://127.0.0.1:{port}/get_server_info", timeout=10).json()["engine_pid"]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.slow
def test_serve_exits_nonzero_when_the_engine_dies(model_dir):
    proc, port = serve_subprocess("--model", str(model_dir), "--log-stats-interval", "0")
    try:
        child = _server_pids(port)
        assert child != proc.pid
        os.kill(child, signal.SIGKILL)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, out
    assert "the engine died" in out and "killed by signal 9" in out, out
    assert _gone(child)


@pytest.mark.slow
def test_sigterm_drains_in_flight_requests(model_dir):
    proc, port = serve_subprocess("--model", str(model_dir), "--log-stats-interval", "0",
                                  "--shutdown-timeout", "60")
    base = f"http://127.0.0.1:{port}"
    try:
        child = _server_pids(port)
        started, events = threading.Event(), []
        body = {"input_ids": [1, 2], "stream": True,
                "sampling_params": {"max_new_tokens": 120, "ignore_eos": True}}
        t = threading.Thread(target=_first_chunk_then_rest,
                             args=(f"{base}/generate", body, started, events))
        t.start()
        assert started.wait(60)
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        refused = False
        while time.monotonic() < deadline and not refused:  # new work is turned away
            try:
                refused = httpx.get(f"{base}/health", timeout=5).status_code == 503
            except httpx.TransportError:
                refused = True
            time.sleep(0.05)
        assert refused
        t.join(60)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert events[0] == 200 and events[-1] == "[DONE]", events[-3:]
    items = [json.loads(e) for e in events[1:-1]]
    assert sum(len(i["output_ids"]) for i in items) == 120  # drained to the end
    assert items[-1]["meta_info"]["finish_reason"] == "length"
    assert "engine shut down" in out and _gone(child)


def test_metrics_cross_the_process_boundary(split_server):
    _load(split_server.base_url)
    wait_idle(split_server.engine)
    text = httpx.get(f"{split_server.base_url}/metrics").text
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    # engine-side series come from the engine process's stats
    assert values["anyware_engine_up"] == 1.0
    assert values["anyware_generation_tokens_total"] >= N_CONCURRENT * NEW_TOKENS
    assert values["anyware_num_requests_running"] == 0.0
    assert values["anyware_kv_pages_total"] > 0
    # front-end series
    assert values["anyware_time_per_output_token_seconds_count"] >= N_CONCURRENT
    assert values["anyware_time_to_first_token_seconds_count"] >= N_CONCURRENT
    assert values['anyware_request_finished_total{finished_reason="length"}'] >= N_CONCURRENT
    assert values["anyware_server_requests_in_flight"] == 0.0


def test_documented_metrics_exist(split_server):
    """Every series docs/metrics.md names is served, and the Grafana dashboard queries only
    those."""
    import re
    from pathlib import Path

    docs = Path(__file__).resolve().parents[2] / "docs"
    documented = set(re.findall(r"`(anyware_[a-z0-9_]+)`", (docs / "metrics.md").read_text()))
    text = httpx.get(f"{split_server.base_url}/metrics").text
    served = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    served |= {s + "_total" for s in served}
    missing = {d for d in documented if d not in served and not d.endswith("_restarts_total")}
    assert not missing, missing
    dash = json.loads((docs / "grafana-anyware.json").read_text())
    queried = {m for p in dash["panels"] for t in p["targets"]
               for m in re.findall(r"anyware_[a-z0-9_]+", t["expr"])}
    queried = {re.sub(r"_bucket$", "", m) for m in queried}
    assert queried <= served, queried - served


def test_engine_exception_fails_requests_with_its_cause(model_dir, monkeypatch):
    from anyware import Engine, SamplingParams
    from anyware.engine import remote
    from anyware.engine.errors import EngineDeadError

    monkeypatch.setattr(remote, "ENGINE_MODULE", "tests.server.crashing_engine")
    eng = Engine(model=str(model_dir), engine_process=True, show_progress=False)
    causes: list[str] = []
    eng.on_death(causes.append)
    try:
        with pytest.raises(EngineDeadError, match="injected fault: step failed"):
            eng.generate([[1, 2, 3]], SamplingParams(max_new_tokens=50, ignore_eos=True))
        assert eng._loop.proc.wait(30) == 1
        with pytest.raises(EngineDeadError, match="exited with code 1"):
            eng.stats()
        assert causes and "injected fault" in causes[0]
    finally:
        eng.shutdown()
