"""Data parallelism: two CPU replicas behind the real sglang-router binary (cache-aware
routing) answer the openai client and /generate with each replica's own greedy output."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import openai
import pytest

from tests.server.conftest import _free_port, serve_subprocess

pytest.importorskip("sglang_router.router", reason="sglang-router is not installed "
                    "(pip install sglang-router; the [dev] extra has it)")

ARGS = ("--platform", "cpu", "--dtype", "float32")
# text: the router parses prompts itself and takes strings (token-id prompts are a 422 there)
PROMPTS = ["def foo(x):", "def foo(y):", "import json"]


def _router(urls: list[str]) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sglang_router.launch_router", "--worker-urls", *urls,
         "--port", str(port), "--prometheus-port", str(_free_port()), "--policy", "cache_aware",
         "--log-level", "warn"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(proc.stdout.read())
        try:
            ready = httpx.get(f"http://127.0.0.1:{port}/readiness", timeout=1)
            if ready.status_code == 200 and ready.json().get("healthy_workers") == len(urls):
                return proc, port
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    proc.kill()
    raise AssertionError("the router did not see its workers: " + proc.stdout.read())


def _complete(port: int, model: str, prompt: str) -> str:
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none")
    out = client.completions.create(model=model, prompt=prompt, max_tokens=6, temperature=0)
    return out.choices[0].text


def test_two_replicas_behind_sglang_router(model_dir):
    path = str(model_dir("qwen3"))
    procs = []
    try:
        ports = []
        for _ in range(2):
            proc, port = serve_subprocess("--model", path, *ARGS, timeout=150)
            procs.append(proc)
            ports.append(port)
        router, rport = _router([f"http://127.0.0.1:{p}" for p in ports])
        procs.append(router)
        for prompt in PROMPTS:  # the router's answer is the replicas' (greedy, same weights)
            direct = _complete(ports[0], path, prompt)
            assert _complete(rport, path, prompt) == direct
        native = httpx.post(f"http://127.0.0.1:{rport}/generate", timeout=60, json={
            "text": PROMPTS[0], "sampling_params": {"max_new_tokens": 6, "temperature": 0}})
        assert native.status_code == 200, native.text
        assert native.json()["text"] == _complete(ports[1], path, PROMPTS[0])
        served = sum(httpx.get(f"http://127.0.0.1:{p}/get_server_info").json()
                     ["internal_states"][0]["prompt_tokens"] > 0 for p in ports)
        assert served >= 1
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)
