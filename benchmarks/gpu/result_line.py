"""One line per `benchmarks/run.py` result file, for the device scripts' logs: the file, the
engine options it ran with, and the headline numbers of its workload.

    python3 benchmarks/gpu/result_line.py $OUT/W1-bf16.json [...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

KEYS = ("tok_s", "ms_per_step", "output_tok_s", "device_busy_fraction", "wall_s",
        "ttft_1024_ms", "ttft_4096_ms", "retractions", "kv_capacity_tokens")


def line(path: str) -> str:
    try:
        d = json.loads(Path(path).read_text())
    except Exception as e:  # a run that crashed or timed out wrote nothing
        return f"{Path(path).name} missing ({e})"
    ours = d.get("ours", {})
    opts = d.get("engine_opts")
    return " ".join([Path(path).name, *([str(opts)] if opts else []),
                     str({k: ours[k] for k in KEYS if k in ours})])


if __name__ == "__main__":
    for p in sys.argv[1:]:
        print(line(p))
