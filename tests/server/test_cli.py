"""``anyware serve`` as a user runs it: a subprocess on a free port, answered by the openai
client, stopped by SIGTERM with a clean engine shutdown."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx
import openai
import pytest

from .conftest import _free_port


def test_parser_defaults():
    from anyware.cli.main import build_parser
    from anyware.cli.serve import demo_model_path

    args = build_parser().parse_args(["serve"])
    assert args.host == "127.0.0.1" and args.port == 30000 and args.model is None
    assert args.api_key is None and not args.disable_radix_cache
    assert demo_model_path().parts[-2:] == ("assets", "demo-llama")
    args = build_parser().parse_args(["serve", "--model", "m", "--page-size", "16",
                                      "--max-running-requests", "8", "--dtype", "float32",
                                      "--load-format", "dummy", "--disable-radix-cache"])
    assert (args.page_size, args.max_running_requests, args.load_format) == (16, 8, "dummy")


@pytest.mark.slow
def test_serve_subprocess_sigterm(model_dir):
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "anyware.cli.main", "serve", "--model", str(model_dir),
         "--port", str(port), "--served-model-name", "tiny", "--api-key", "k"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.25)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k",
                               max_retries=0)
        resp = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hello"}], max_tokens=5,
            extra_body={"ignore_eos": True})
        assert resp.usage.completion_tokens == 5
        assert isinstance(resp.choices[0].message.content, str)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert "engine shut down" in out, out
