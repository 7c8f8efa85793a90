"""A benchmark summary (``BenchResult.summary()``) as a human-readable table."""

from __future__ import annotations

import math
from typing import Any


def _num(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


def summary_table(summary: dict[str, Any]) -> str:
    """Throughput and latency lines: requests/s, output and total tok/s, TTFT and ITL
    percentiles (p50/p90/p99, milliseconds), with the workload and where it ran."""
    wl = summary.get("workload", {})
    rows = [
        ("model", str(summary.get("model", "-"))),
        ("platform / device", f"{summary.get('platform', '-')} / {summary.get('device', '-')}"),
        *([("dtype / KV / linear", f"{p['dtype']} / {p['kv_cache_dtype']} / "
                                    f"{p['quantization'] or 'unquantized'}")]
          if (p := summary.get("precision")) else []),
        ("requests", f"{wl.get('num_prompts', '-')} x ({wl.get('input_len', '-')} in, "
                     f"{wl.get('output_len', '-')} out)"),
        ("wall time (s)", _num(summary.get("wall_s"), 3)),
        ("requests/s", _num(summary.get("request_s"), 3)),
        ("output tok/s", _num(summary.get("output_tok_s"))),
        ("total tok/s", _num(summary.get("total_tok_s"))),
        ("prompt / output / cached tokens",
         f"{_num(summary.get('prompt_tokens'))} / {_num(summary.get('output_tokens'))} / "
         f"{_num(summary.get('cached_tokens'))}"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = ["Benchmark result", "-" * (width + 30)]
    lines += [f"{k:<{width}}  {v}" for k, v in rows]
    lines.append("")
    lines.append(f"{'latency (ms)':<{width}}  {'p50':>10} {'p90':>10} {'p99':>10}")
    for label, key in (("time to first token", "ttft_ms"), ("inter-token latency", "itl_ms")):
        lines.append(
            f"{label:<{width}}  {_num(summary.get(f'{key}_median'), 3):>10} "
            f"{_num(summary.get(f'{key}_p90'), 3):>10} {_num(summary.get(f'{key}_p99'), 3):>10}")
    return "\n".join(lines)
