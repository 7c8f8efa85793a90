"""Real acceptance (issue 13): the shipped demo target (`anyware-demo`, a 4-layer Llama trained
on Python source) with n-gram prompt lookup and with its shipped draft model
(`demo-llama-draft`), on real text — chunks of this repository's own Python files, which
the demo models never saw — greedy, batch 1 and 16. Reports output tok/s, the speedup over no
speculation, the measured mean acceptance length and whether the output is token-identical.

    python benchmarks/gpu/spec_real.py [--platform cuda] [--out DIR]   # < 2 minutes on a GPU

The demo models are tiny (hidden 256): a step is launch-bound, so the speedups say what the
mechanism costs per step more than what a large target would gain.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from anyware import Engine, SamplingParams
from anyware.engine.config import demo_model_path

ROOT = Path(__file__).resolve().parents[2]


def prompts(tokenizer, n: int, length: int) -> list[list[int]]:
    files = sorted((ROOT / "core").rglob("*.py"))
    out = []
    for f in files:
        ids = tokenizer.encode(f.read_text(), add_special_tokens=False)
        if len(ids) >= length:
            out.append(ids[:length])
        if len(out) == n:
            break
    return out


def run(algo: str | None, batch: list[list[int]], new: int, k: int, platform: str | None):
    kw = {}
    if algo == "ngram":
        kw = dict(speculative_algorithm="ngram", speculative_num_draft_tokens=k)
    elif algo == "draft":
        kw = dict(speculative_algorithm="draft", speculative_num_draft_tokens=k,
                  speculative_draft_model=str(demo_model_path().parent / "demo-llama-draft"))
    params = SamplingParams(max_new_tokens=new, temperature=0, ignore_eos=True)
    with Engine("anyware-demo", platform=platform, show_progress=False,
                speculative_auto_off=False, **kw) as eng:
        # warm with the measured run itself: kernels JIT-compile for the lengths they meet
        # (a short warm-up left those compiles in the first engine's timed run)
        eng.generate(batch, [params] * len(batch))
        before = eng.stats()
        t0 = time.perf_counter()
        res = eng.generate(batch, [params] * len(batch))
        dt = time.perf_counter() - t0
        after = eng.stats()
    steps = after.verify_steps - before.verify_steps
    acc = after.accepted_tokens - before.accepted_tokens
    return ([r.outputs[0].token_ids for r in res], len(batch) * new / dt,
            (acc + steps) / steps if steps else None)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--platform", default=None)
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--prompt-len", type=int, default=192)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args()
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_file=str(demo_model_path() / "tokenizer.json"))
    rows = []
    for bs in (int(b) for b in args.batches.split(",")):
        batch = prompts(tok, bs, args.prompt_len)
        base, base_tps, _ = run(None, batch, args.new_tokens, args.k, args.platform)
        rows.append(dict(batch=bs, run="no speculation", tok_s=base_tps))
        print(json.dumps(rows[-1]), flush=True)
        for algo in ("ngram", "draft"):
            out, tps, acc = run(algo, batch, args.new_tokens, args.k, args.platform)
            rows.append(dict(batch=bs, run=algo, tok_s=tps, speedup=tps / base_tps,
                             mean_acceptance_length=acc, identical=out == base))
            print(json.dumps(rows[-1]), flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "spec_real.json"), "w") as f:
        json.dump(dict(commit=os.environ.get("ANYWARE_COMMIT", ""), k=args.k,
                       prompt_len=args.prompt_len, new_tokens=args.new_tokens, rows=rows), f,
                  indent=2)


if __name__ == "__main__":
    main()
