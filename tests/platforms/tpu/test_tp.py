"""In-process tensor parallelism on the tpu platform: ``tpu_tp=2`` over two virtual CPU
devices (one process, GSPMD-partitioned step) gives the greedy tokens of transformers, which
the TP=1 run (test_engine_tpu.py) gives too. In a subprocess: XLA_FLAGS must be set before
JAX starts."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine.tiny_models import hf_greedy, random_prompts

WORKER = Path(__file__).with_name("tp_worker.py")


@pytest.mark.slow
def test_tp2_on_two_virtual_devices_matches_tp1(model_dir, tmp_path):
    model = model_dir("llama")
    prompts, new = random_prompts((5, 12, 20)), 8
    expected, _ = hf_greedy(model, prompts, new)
    out = tmp_path / "tp.json"
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    proc = subprocess.run([sys.executable, str(WORKER), str(model), json.dumps([prompts, new]),
                           str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    got = json.loads(out.read_text())
    assert got["devices"] == 2
    specs = got["specs"]
    assert any(n.endswith("qkv_proj.weight") and s == "P('tp', None)" for n, s in specs.items()), specs
    assert any(n.endswith("down_proj.weight") and s == "P(None, 'tp')" for n, s in specs.items()), specs
    assert got["kv"] == "P(None, None, 'tp', None)"
    assert got["tokens"] == expected
    assert got["compilations"] == got["warmed"], "the serving loop compiled a new program"
