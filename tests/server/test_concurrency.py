"""Many concurrent streams, and client disconnects that must free their KV pages."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from .conftest import wait_idle

N_STREAMS = 200
MAX_TOKENS = 4


def parse_sse(raw: str) -> list[dict | str]:
    """Events of an SSE body; fails on anything that is not a well-formed ``data:`` event."""
    assert raw.endswith("\n\n"), raw[-100:]
    events = []
    for block in raw.split("\n\n")[:-1]:
        assert block.startswith("data: "), block
        data = block[len("data: "):]
        events.append(data if data == "[DONE]" else json.loads(data))
    return events


async def one_stream(c: httpx.AsyncClient, model: str, i: int) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": f"request {i}"}],
            "max_tokens": MAX_TOKENS, "stream": True, "stream_options": {"include_usage": True},
            "ignore_eos": True}
    async with c.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200, await r.aread()
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = (await r.aread()).decode()
    events = parse_sse(raw)
    assert events[-1] == "[DONE]" and "[DONE]" not in events[:-1]
    chunks = events[:-1]
    assert len({e["id"] for e in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    usage = chunks[-1]["usage"]
    assert chunks[-1]["choices"] == []
    assert usage["completion_tokens"] == MAX_TOKENS
    assert usage["total_tokens"] == usage["prompt_tokens"] + MAX_TOKENS
    body_chunks = chunks[:-1]
    assert all(e["object"] == "chat.completion.chunk" for e in body_chunks)
    finishes = [e["choices"][0]["finish_reason"] for e in body_chunks]
    assert finishes[-1] == "length" and all(f is None for f in finishes[:-1])
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in body_chunks)
    return {"id": chunks[0]["id"], "text": text}


def test_200_concurrent_streams(server):
    async def main() -> list[dict]:
        limits = httpx.Limits(max_connections=N_STREAMS, max_keepalive_connections=N_STREAMS)
        async with httpx.AsyncClient(base_url=server.base_url, limits=limits,
                                     timeout=httpx.Timeout(120)) as c:
            return await asyncio.gather(*(one_stream(c, server.model, i)
                                          for i in range(N_STREAMS)))

    results = asyncio.run(main())
    assert len(results) == N_STREAMS
    assert len({r["id"] for r in results}) == N_STREAMS
    wait_idle(server.engine)


LONG = 900  # far more tokens than are generated before the disconnect is noticed


@pytest.mark.parametrize("stream", [True, False])
def test_disconnect_aborts_and_frees_kv(server, stream):
    engine = server.engine
    before = wait_idle(engine)
    body = {"model": server.model, "prompt": "def main():\n", "max_tokens": LONG,
            "ignore_eos": True, "stream": stream}
    if stream:
        with httpx.Client(base_url=server.base_url, timeout=60) as c, c.stream(
            "POST", "/v1/completions", json=body
        ) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            got = 0
            for line in lines:
                if line.startswith("data: "):
                    got += 1
                    if got == 3:
                        break
            running = engine.stats()
            assert running.running + running.waiting == 1
            assert running.kv_pages_used > 0
        # leaving the blocks closes the connection mid-stream
    else:
        # the client gives up while the request is running, dropping the connection
        with httpx.Client(base_url=server.base_url) as c, pytest.raises(httpx.ReadTimeout):
            c.post("/v1/completions", json=body, timeout=httpx.Timeout(60, read=0.5))
    after = wait_idle(engine)
    generated = after.generated_tokens - before.generated_tokens
    assert generated < LONG, "the request ran to completion: it was not aborted"
    metrics = httpx.get(f"{server.base_url}/metrics").text
    assert "anyware_num_requests_running 0.0" in metrics
    assert "anyware_kv_pages_used 0.0" in metrics
