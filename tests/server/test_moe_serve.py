"""The OpenAI server serves Hugging Face MoE directories (Qwen3-MoE, Mixtral) on the CPU:
a greedy completion over HTTP equals the engine's own greedy generation of the same prompt."""

from __future__ import annotations

import httpx
import pytest

from tests.engine.tiny_models import build_model

from .conftest import _start


@pytest.mark.parametrize("arch", ["qwen3-moe", "mixtral"])
def test_serves_moe_directory(tmp_path, arch):
    from anyware import Engine, SamplingParams
    from anyware.server.app import create_app

    path = build_model(arch, tmp_path / arch)
    engine = Engine(model=str(path), dtype="float32", show_progress=False)
    server, thread, port = _start(create_app(engine, arch, api_key=None))
    try:
        prompt = "def dumps(obj, *, skipkeys=False"
        resp = httpx.post(f"http://127.0.0.1:{port}/v1/completions", timeout=60, json={
            "model": arch, "prompt": prompt, "max_tokens": 8, "temperature": 0,
            "ignore_eos": True})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["usage"]["completion_tokens"] == 8
        want = engine.generate(prompt, SamplingParams(max_new_tokens=8, temperature=0,
                                                      ignore_eos=True))
        want = want[0] if isinstance(want, list) else want
        assert body["choices"][0]["text"] == want.outputs[0].text
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        engine.shutdown()
