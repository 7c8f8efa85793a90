"""Multi-rank tests on CPU ranks (gloo): one tiny fp32 model per architecture for the session,
and helpers to look at the processes a test started."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import pytest

from tests.engine.tiny_models import build_model

# name -> (tiny_models arch, overrides): qwen2 with one KV head (< tp: replicated per rank)
MODELS = {
    "llama": ("llama", {}),
    "qwen2-kv1": ("qwen2", {"num_key_value_heads": 1}),
    "qwen3": ("qwen3", {}),
    "qwen3-moe": ("qwen3-moe", {}),
}
ENGINE = dict(platform="cpu", dtype="float32", show_progress=False, debug_invariants=True,
              kv_cache_bytes=1 << 22, dist_timeout=30.0)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """``model_dir(name)``: a tiny model directory of :data:`MODELS` (built once)."""
    cache: dict[str, Path] = {}

    def make(name: str) -> Path:
        if name not in cache:
            arch, overrides = MODELS[name]
            cache[name] = build_model(arch, tmp_path_factory.mktemp(name), **overrides)
        return cache[name]

    return make


def children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (Linux /proc), zombies excluded."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """The pids still alive after up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def kill_all(pids: list[int]) -> None:
    for p in pids:
        with contextlib.suppress(OSError):
            os.kill(p, 9)
