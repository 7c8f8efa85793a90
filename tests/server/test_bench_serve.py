"""``anyware bench serve`` at tiny scale against the test servers: every request completes with
the asked number of tokens, the summary's counts agree with the engine's, and a model without a
tokenizer streams a chunk per engine output on both endpoints."""

from __future__ import annotations

import asyncio
import json
import math

import httpx
import pytest

from .conftest import wait_idle


def _run(server, **kw):
    from anyware.bench.online import ServeWorkload, run_serve_bench

    return asyncio.run(run_serve_bench(server.base_url, ServeWorkload(**kw), warmup=False))


@pytest.mark.parametrize("endpoint", ["generate", "completions"])
def test_all_at_once_random(server, endpoint):
    before = wait_idle(server.engine)
    s = _run(server, num_prompts=8, input_len=16, output_len=6, endpoint=endpoint)
    after = wait_idle(server.engine)
    assert s["completed"] == 8 and s["failed"] == 0, s["errors"]
    assert s["output_tokens"] == 8 * 6 == after.generated_tokens - before.generated_tokens
    assert s["prompt_tokens"] == 8 * 16
    for key in ("ttft", "tpot", "itl", "e2e"):
        assert s[f"{key}_ms_median"] > 0 and s[f"{key}_ms_p99"] >= s[f"{key}_ms_median"]
    assert s["ttft_ms_p99"] <= s["e2e_ms_p99"]
    assert math.isclose(s["output_tok_s"], s["output_tokens"] / s["duration_s"])


def test_poisson_rate_concurrency_and_ranges(server):
    s = _run(server, num_prompts=6, input_len=20, output_len=5, range_ratio=0.5,
             request_rate=40.0, max_concurrency=2, seed=3)
    assert s["completed"] == 6 and s["failed"] == 0
    assert 6 * 10 <= s["prompt_tokens"] <= 6 * 20 and s["output_tokens"] <= 6 * 5
    assert s["concurrency_mean"] <= 2.0 + 1e-6


def test_per_request_records_in_sending_order(server):
    from anyware.bench.online import ServeWorkload, run_serve_bench

    s = asyncio.run(run_serve_bench(server.base_url, ServeWorkload(
        num_prompts=5, input_len=12, output_len=4, request_rate=50.0, seed=4), warmup=False,
        per_request=True))
    rows = s["requests"]
    assert len(rows) == 5 and all(ok for *_, ok in rows)
    sent = [r[0] for r in rows]
    assert sent == sorted(sent) and sent[0] >= 0
    assert all(0 < ttft <= e2e for _, ttft, e2e, _ in rows)
    assert abs(s["ttft_ms_p99"] - max(r[1] for r in rows)) < 0.01  # 5 requests: p99 = worst


def test_sharegpt_file(server, tmp_path):
    convs = [{"conversations": [{"from": "human", "value": f"def f{i}(x):\n    return x"},
                                {"from": "gpt", "value": "import os\nimport sys\n" * (i + 1)}]}
             for i in range(5)]
    path = tmp_path / "sharegpt.json"
    path.write_text(json.dumps(convs))
    s = _run(server, num_prompts=4, dataset="sharegpt", dataset_path=str(path))
    assert s["completed"] == 4 and s["failed"] == 0
    with pytest.raises(ValueError, match="dataset-path"):
        _run(server, num_prompts=4, dataset="sharegpt")


@pytest.mark.parametrize("endpoint", ["generate", "completions"])
def test_no_tokenizer_streams_every_output(bare_server, endpoint):
    s = _run(bare_server, num_prompts=3, input_len=8, output_len=5, endpoint=endpoint)
    assert s["completed"] == 3 and s["output_tokens"] == 15, s["errors"]
    assert s["itl_ms_median"] is not None  # chunks came one after another, not all at the end


def test_completions_without_tokenizer_send_a_chunk_per_output(bare_server):
    body = {"model": bare_server.model, "prompt": [1, 2, 3], "max_tokens": 6,
            "ignore_eos": True, "stream": True}
    with httpx.Client(base_url=bare_server.base_url, timeout=60) as c, c.stream(
            "POST", "/v1/completions", json=body) as r:
        chunks = [json.loads(x[6:]) for x in r.iter_lines()
                  if x.startswith("data: ") and x != "data: [DONE]"]
    assert 2 <= len(chunks) <= 6 and all(ch["choices"][0]["text"] == "" for ch in chunks)


def test_cli_bench_serve_json(server, tmp_path, capsys):
    from anyware.cli.main import main

    out = tmp_path / "r.json"
    rc = main(["bench", "serve", "--base-url", server.base_url, "--num-prompts", "3",
               "--input-len", "8", "--output-len", "3", "--no-progress", "--json", str(out)])
    assert rc == 0
    s = json.loads(out.read_text())
    assert s["completed"] == 3 and s["output_tokens"] == 9
    assert "time per output token" in capsys.readouterr().out
