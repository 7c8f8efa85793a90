"""``anyware serve --tp 2`` (ranks spawned) and ``torchrun --nproc-per-node 2 -m anyware
serve --tp 2`` answer the openai client with TP=1's greedy text; killing the server's process
leaves no rank behind."""

from __future__ import annotations

import signal
import subprocess
import sys

import openai
from anyware import Engine, SamplingParams

from tests.parallel.conftest import ENGINE, children, kill_all, wait_gone
from tests.server.conftest import _free_port, serve_subprocess

PROMPT = [5, 6, 7, 8, 9, 10]
ARGS = ("--platform", "cpu", "--dtype", "float32", "--tp", "2", "--dist-timeout", "60")


def _tp1_text(path) -> str:
    engine = Engine(str(path), **ENGINE)
    try:
        return engine.generate([PROMPT], SamplingParams(max_new_tokens=8, temperature=0.0))[0] \
            .outputs[0].text
    finally:
        engine.shutdown()


def _complete(port: int, model: str) -> str:
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none")
    out = client.completions.create(model=model, prompt=PROMPT, max_tokens=8, temperature=0)
    return out.choices[0].text


def test_serve_tp2_answers_and_dies_with_its_ranks(model_dir):
    path = model_dir("qwen3")
    proc, port = serve_subprocess("--model", str(path), *ARGS, timeout=150)
    ranks = children(proc.pid)
    try:
        assert _complete(port, str(path)) == _tp1_text(path)
        proc.send_signal(signal.SIGKILL)  # rank 0 dies without any cleanup
        proc.wait(10)
        assert wait_gone(ranks, 10) == [], "spawned ranks outlived rank 0"
    finally:
        proc.kill()
        kill_all(ranks)


def test_torchrun_serve_tp2(model_dir):
    path = model_dir("qwen3")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                "--master-port", str(_free_port()), "-m", "anyware"]
    proc, port = serve_subprocess("--model", str(path), *ARGS, timeout=150, launcher=launcher)
    workers = children(proc.pid)
    try:
        assert len(workers) == 2  # torchrun's two ranks: rank 0 serves, rank 1 follows
        assert _complete(port, str(path)) == _tp1_text(path)
        proc.send_signal(signal.SIGTERM)  # torchrun stops its workers
        proc.wait(30)
        assert wait_gone(workers, 10) == []
    finally:
        proc.kill()
        kill_all(workers)


def test_two_nodes_without_torchrun(model_dir):
    """``--nnodes 2 --node-rank 0|1 --dist-init-addr``: two 'nodes' (processes) on this host;
    node 1 serves no HTTP and stops when node 0 (rank 0) shuts down."""
    path = model_dir("qwen3")
    addr = f"127.0.0.1:{_free_port()}"
    node = ("--model", str(path), *ARGS, "--nnodes", "2", "--dist-init-addr", addr)
    node1 = subprocess.Popen([sys.executable, "-m", "anyware", "serve", *node, "--node-rank",
                              "1", "--port", str(_free_port())],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        proc, port = serve_subprocess(*node, "--node-rank", "0", timeout=150)
        try:
            assert _complete(port, str(path)) == _tp1_text(path)
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            assert node1.wait(30) == 0, node1.stdout.read()  # stopped by rank 0, cleanly
        finally:
            proc.kill()
    finally:
        node1.kill()
