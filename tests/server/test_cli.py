"""``anyware serve`` as a user runs it: a subprocess on a free port, answered by the openai
client, stopped by SIGTERM with a clean engine shutdown."""

from __future__ import annotations

import signal
import subprocess
import sys

import openai
import pytest

from .conftest import serve_subprocess


def test_parser_defaults():
    from anyware.cli.main import build_parser
    from anyware.cli.serve import demo_model_path

    args = build_parser().parse_args(["serve"])
    assert args.host == "127.0.0.1" and args.port == 30000 and args.model == "anyware-demo"
    assert args.api_key is None and not args.disable_radix_cache
    assert demo_model_path().parts[-2:] == ("assets", "demo-llama")
    args = build_parser().parse_args(["serve", "--model", "m", "--page-size", "16",
                                      "--max-running-requests", "8", "--dtype", "float32",
                                      "--load-format", "dummy", "--disable-radix-cache"])
    assert (args.page_size, args.max_running_requests, args.load_format) == (16, 8, "dummy")


@pytest.mark.slow
def test_serve_subprocess_sigterm(model_dir):
    proc, port = serve_subprocess("--model", str(model_dir), "--served-model-name", "tiny",
                                  "--api-key", "k", "--log-stats-interval", "0.2")
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k",
                               max_retries=0)
        resp = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hello"}], max_tokens=5,
            extra_body={"ignore_eos": True})
        assert resp.usage.completion_tokens == 5
        assert isinstance(resp.choices[0].message.content, str)
        # busy long enough for a stats line (interval 0.2 s)
        client.completions.create(model="tiny", prompt="x", max_tokens=200,
                                  extra_body={"ignore_eos": True})
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert "engine shut down" in out, out
    # access log: one line per request, at the default log level
    assert '"POST /v1/chat/completions HTTP/1.1" 200' in out, out
    assert '"GET /health HTTP/1.1" 200' in out, out
    # periodic engine stats while busy
    stats = [line for line in out.splitlines() if "engine: running=" in line]
    assert stats and "kv=" in stats[0] and "generation=" in stats[0], out


def _main(argv, capsys):
    from anyware.cli.main import main

    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.mark.parametrize("command", ["serve", "generate", "bench", "platforms"])
def test_bad_option_shows_the_subcommands_usage(capsys, command):
    rc, _, err = _main([command, "--no-such-option"], capsys)
    assert rc == 2 and err.startswith(f"usage: anyware {command}"), err
    assert "unrecognized arguments: --no-such-option" in err


@pytest.mark.parametrize("argv", [["serve", "--mod", "x"], ["bench", "--num-p", "3"],
                                  ["generate", "--prompt", "a", "--max-new", "3"]])
def test_no_prefix_abbreviations(capsys, argv):
    rc, _, err = _main(argv, capsys)
    assert rc == 2 and f"usage: anyware {argv[0]}" in err, err


def test_one_set_of_load_formats():
    from anyware.cli.main import build_parser
    from anyware.cli.options import DEMO_MODEL, LOAD_FORMATS, QUANTIZATIONS
    from anyware.engine.config import DEMO_MODEL as ENGINE_DEMO
    from anyware.model.loader import LOAD_FORMATS as LOADER_FORMATS
    from anyware.plugin import QUANTIZATIONS as PLUGIN_QUANTIZATIONS

    assert LOAD_FORMATS == LOADER_FORMATS and DEMO_MODEL == ENGINE_DEMO
    assert QUANTIZATIONS == PLUGIN_QUANTIZATIONS
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name in ("serve", "generate", "bench"):
        action = next(a for a in sub.choices[name]._actions if a.dest == "load_format")
        assert tuple(action.choices) == LOAD_FORMATS and action.default == "auto", name
        model = next(a for a in sub.choices[name]._actions if a.dest == "model")
        assert model.default == DEMO_MODEL, name


@pytest.mark.parametrize("command", [["generate", "--prompt-ids", "1,2"],
                                     ["bench", "--num-prompts", "1"], ["serve", "--port", "1"]])
def test_preset_without_dummy_is_an_error(capsys, command):
    rc, _, err = _main([*command, "--model", "qwen3-0.6b"], capsys)
    assert rc == 1 and "shape preset" in err and "--load-format dummy" in err, err


def test_generate_help_documents_defaults(capsys):
    rc, out, _ = _main(["generate", "--help"], capsys)
    assert rc == 0
    flat = " ".join(out.split())
    for text in ("--max-new-tokens MAX_NEW_TOKENS tokens to generate per prompt (default: 64)",
                 "0 is greedy (default: 0.0)", "--prompt-ids IDS", "(default: anyware-demo)"):
        assert text in flat, flat


def test_generate_token_ids(capsys, bare_model_dir, model_dir):
    rc, out, err = _main(["generate", "--model", str(bare_model_dir), "--load-format", "dummy",
                          "--prompt-ids", "5,6,7", "--max-new-tokens", "3", "--ignore-eos"],
                         capsys)
    assert rc == 0, err
    prompt, _, generated = out.strip().partition(" -> ")
    assert prompt == "5 6 7" and len(generated.split()) == 3, out
    rc, out, err = _main(["generate", "--model", str(model_dir), "--prompt-ids", "5 6 7",
                          "--max-new-tokens", "2"], capsys)
    assert rc == 0 and out.strip(), err
    rc, _, err = _main(["generate", "--prompt-ids", "1,x"], capsys)
    assert rc == 2 and "token ids" in err
    rc, _, err = _main(["generate"], capsys)
    assert rc == 2 and "--prompt" in err


def test_bench_table_progress_and_json(capsys, tmp_path):
    import json

    path = tmp_path / "bench.json"
    rc, out, err = _main(["bench", "--num-prompts", "4", "--input-len", "8", "--output-len", "4",
                          "--json", str(path)], capsys)
    assert rc == 0, err
    assert "Benchmark:" in err and "4/4" in err  # the progress bar
    for text in ("requests/s", "output tok/s", "time to first token", "inter-token latency",
                 "p50", "p90", "p99", "anyware-demo"):
        assert text in out, out
    summary = json.loads(path.read_text())
    assert summary["model"] == "anyware-demo" and summary["output_tokens"] == 16
    assert summary["ttft_ms_p99"] >= summary["ttft_ms_median"] > 0


def test_serve_checks_the_port_before_loading(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "anyware.cli.main", "serve", "--port", str(port),
             "--model", str(tmp_path / "no-such-model")],
            capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert f"127.0.0.1:{port}" in proc.stderr and "--port" in proc.stderr, proc.stderr
    assert "no-such-model" not in proc.stderr, proc.stderr  # the model was never looked at


def test_serve_flags_from_vllm_and_sglang(tmp_path, capsys):
    from anyware.cli.main import build_parser
    from anyware.cli.options import engine_kwargs
    from anyware.cli.serve import DEFAULT_SHUTDOWN_TIMEOUT_S, _chat_template
    from anyware.server.launch import GRACEFUL_SHUTDOWN_S

    assert DEFAULT_SHUTDOWN_TIMEOUT_S == GRACEFUL_SHUTDOWN_S
    args = build_parser().parse_args([
        "serve", "--max-model-len", "128", "--gpu-memory-utilization", "0.5",
        "--tokenizer", "tok", "--chat-template", "t.jinja", "--disable-log-requests",
        "--uvicorn-log-level", "warning", "--engine-in-process", "--shutdown-timeout", "3"])
    kw = engine_kwargs(args)
    assert (kw["context_len"], kw["mem_fraction"], kw["tokenizer"]) == (128, 0.5, "tok")
    assert args.disable_log_requests and args.engine_in_process
    assert (args.uvicorn_log_level, args.shutdown_timeout, args.chat_template) == (
        "warning", 3.0, "t.jinja")
    args = build_parser().parse_args(["serve", "--context-len", "64", "--mem-fraction", "0.4"])
    assert (args.context_len, args.mem_fraction) == (64, 0.4)
    f = tmp_path / "t.jinja"
    f.write_text("{{ messages[0]['content'] }}")
    assert _chat_template(str(f)) == f.read_text()
    assert _chat_template("{{ x }}") == "{{ x }}"
    with pytest.raises(FileNotFoundError, match="no such file"):
        _chat_template(str(tmp_path / "missing.jinja"))
    rc, out, _ = _main(["serve", "--help"], capsys)
    assert rc == 0
    for title in ("model:", "HTTP server:", "process model", "engine capacity and execution:",
                  "logging:", "speculative decoding"):
        assert title in out, out
