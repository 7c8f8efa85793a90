"""``anyware serve --platform tpu`` (JAX's CPU backend) as a user runs it: a subprocess with
small compiled buckets, answered by the openai client; greedy text equals the CPU reference
engine's (both fp32) and SIGTERM shuts it down cleanly."""

from __future__ import annotations

import importlib.util
import signal

import pytest

from .conftest import serve_subprocess

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("jax") is None or importlib.util.find_spec("torchax") is None,
    reason="jax / torchax not installed (pip install anyware[tpu])",
)

# buckets: T in {8..64}, B in {1..4} (12 programs compiled at start-up)
SMALL = ["--dtype", "float32", "--max-running-requests", "4", "--chunked-prefill-size", "32",
         "--context-len", "128", "--page-size", "16"]


@pytest.mark.slow
def test_serve_tpu_answers_the_openai_client(model_dir, engine):
    import openai
    from anyware import SamplingParams

    proc, port = serve_subprocess("--platform", "tpu", "--model", str(model_dir),
                                  "--served-model-name", "tiny", *SMALL, timeout=180)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused",
                               max_retries=0, timeout=60)
        prompts = ["def dumps(obj, *, skipkeys=False", "import heapq\n"]
        want = engine.generate(prompts, SamplingParams(max_new_tokens=8, temperature=0,
                                                       ignore_eos=True))
        resp = client.completions.create(model="tiny", prompt=prompts, max_tokens=8,
                                         temperature=0, extra_body={"ignore_eos": True})
        got = sorted(resp.choices, key=lambda c: c.index)
        assert [c.text for c in got] == [w.outputs[0].text for w in want]
        assert resp.usage.completion_tokens == 16
        chunks = list(client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hello"}], max_tokens=5,
            temperature=0, stream=True, extra_body={"ignore_eos": True}))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert "engine shut down" in out, out
