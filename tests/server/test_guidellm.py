"""A third-party load generator against the server: GuideLLM (vLLM project) at tiny scale,
streaming /v1/completions at concurrency 2 over the split engine (``anyware serve``'s default).
aiperf 0.13 also installs but pulls ~60 packages (pandas, dash, kubernetes, ...); inference-perf
has no release for this Python (3.11; it needs >= 3.12). Skipped when guidellm is absent."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("guidellm", reason="guidellm is not installed (pip install guidellm; "
                                       "it is in the [dev] extra)")

REQUESTS = 6


@pytest.mark.slow
def test_guidellm_concurrent(split_server, model_dir, tmp_path):
    scenario = {"spec": {
        "backend": {"kind": "openai_http", "target": split_server.base_url,
                    "model": split_server.model, "request_format": "/v1/completions"},
        "profile": {"kind": "concurrent", "streams": 2},
        "tokenizer": {"kind": "hf_auto", "model": str(model_dir)},
        "data": [{"kind": "synthetic_text", "prompt_tokens": 16, "output_tokens": 4}],
        "constraints": [{"kind": "max_requests", "count": REQUESTS}],
    }}
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(scenario))
    out = tmp_path / "guidellm.json"
    exe = shutil.which("guidellm") or str(Path(sys.executable).parent / "guidellm")
    proc = subprocess.run(
        [exe, "run", "--scenario", str(path), "--output", f"kind=json,path={out}",
         "--disable-progress"],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
        env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    metrics = json.loads(out.read_text())["benchmarks"][0]["metrics"]
    assert metrics["request_totals"] == {"successful": REQUESTS, "errored": 0, "incomplete": 0,
                                         "total": REQUESTS}
    tokens = metrics["output_token_count"]["successful"]
    assert tokens["count"] == REQUESTS and tokens["min"] == tokens["max"] == 4
    assert metrics["time_to_first_token_ms"]["successful"]["median"] > 0
