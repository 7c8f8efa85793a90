"""The platform options a device session's sweeps chose, for the next call on the same machine.

    python3 benchmarks/gpu/pick_options.py decode /tmp/decode_sweep_fp8.json   # triton_decode_* options
    python3 benchmarks/gpu/pick_options.py gemv /tmp/fp8_small_m.json          # cuda_fp8_gemv_max_rows

Prints ``--platform-opt KEY=VALUE ...`` (nothing when the default won or the file is missing),
so a script can splice it into ``benchmarks/run.py``'s command line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def decode(path: Path) -> str:
    """The sweep's fastest configuration, if it beat the default by more than 3%."""
    d = json.loads(path.read_text())
    best = d.get("best")
    base = next((r for r in d.get("rows", []) if r.get("default") and "ms" in r), None)
    if not best or not base or best["ms"] > 0.97 * base["ms"]:
        return ""
    return best["platform_opts"]


def gemv(path: Path) -> str:
    """The largest row count (1, 2, 4) at which the few-rows kernel's default blocks (the
    file's ``default_gemv``) beat quantisation + ``_scaled_mm`` summed over the model's
    layers, if any."""
    d = json.loads(path.read_text())
    ours_label, rows_ok = d["default_gemv"], 0
    for m in (1, 2, 4):
        ours = theirs = 0.0
        for r in d["results"]:
            if r.get("rows") != m or "us" not in r:
                continue
            if r["method"] == ours_label:
                ours += r["us"]
            elif r["method"] == "scaled_mm":
                theirs += r["us"]
        if ours and theirs and ours < 0.97 * theirs:
            rows_ok = m
        else:
            break
    return f"--platform-opt cuda_fp8_gemv_max_rows={rows_ok}" if rows_ok else ""


if __name__ == "__main__":
    kind, file = sys.argv[1], Path(sys.argv[2])
    if file.exists():
        print({"decode": decode, "gemv": gemv}[kind](file))
