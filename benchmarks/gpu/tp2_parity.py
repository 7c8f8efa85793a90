"""TP=2 vs TP=1 greedy parity on the device (issue 15/19): random checkpoints built here with
transformers (no network), each served with --tp 1 and --tp 2; fp32 must be token-identical,
bf16 is reported as the share of identical tokens (sums reduce in another order over ranks).

    python3 benchmarks/gpu/tp2_parity.py --out $OUT [--platform cuda]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from anyware import Engine, SamplingParams

from tests.engine.tiny_models import build_model, random_prompts

SHAPE = dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=4,
             num_attention_heads=8, num_key_value_heads=2)
CASES = [  # (name, tiny_models arch, overrides, engine options for tp=2, dtypes)
    ("llama", "llama", {}, {}, ("float32", "bfloat16")),
    ("qwen2-kv1-tied", "qwen2", {"num_key_value_heads": 1}, {}, ("float32",)),
    ("qwen3", "qwen3", {}, {}, ("float32", "bfloat16")),
    ("qwen3-moe-tp", "qwen3-moe", {}, {}, ("float32",)),
    ("qwen3-moe-ep", "qwen3-moe", {}, {"enable_expert_parallel": True}, ("float32",)),
]


def greedy(path: Path, prompts, platform: str, dtype: str, **options) -> tuple[list, float]:
    t = time.perf_counter()
    engine = Engine(str(path), platform=platform, dtype=dtype, show_progress=False,
                    mem_fraction=0.3, **options)
    try:
        outs = engine.generate(prompts, SamplingParams(max_new_tokens=32, temperature=0.0))
        return [o.outputs[0].token_ids for o in outs], time.perf_counter() - t
    finally:
        engine.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--platform", default="cuda")
    ap.add_argument("--only", default=None, help="comma-separated case names")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    prompts = random_prompts([5, 17, 64, 200] * 4)
    results, models = [], {}
    for name, arch, overrides, options, dtypes in CASES:
        if a.only and name not in a.only.split(","):
            continue
        key = (arch, tuple(sorted(overrides.items())))
        if key not in models:
            models[key] = build_model(arch, out / "models" / name, **{**SHAPE, **overrides})
        for dtype in dtypes:
            ref, t1 = greedy(models[key], prompts, a.platform, dtype)
            tp2, t2 = greedy(models[key], prompts, a.platform, dtype, tensor_parallel_size=2,
                             **options)
            same = sum(x == y for r, s in zip(ref, tp2) for x, y in zip(r, s))
            total = sum(len(r) for r in ref)
            rec = dict(case=name, dtype=dtype, identical_requests=sum(r == s for r, s in
                                                                     zip(ref, tp2)),
                       requests=len(ref), identical_token_share=round(same / total, 4),
                       token_identical=ref == tp2, tp1_s=round(t1, 1), tp2_s=round(t2, 1))
            print(json.dumps(rec), flush=True)
            results.append(rec)
            (out / "tp2_parity.json").write_text(json.dumps(results, indent=2))
    failed = [r for r in results if r["dtype"] == "float32" and not r["token_identical"]]
    print("FP32 PARITY:", "FAIL " + str([r["case"] for r in failed]) if failed else "OK")


if __name__ == "__main__":
    main()
