"""GPU check of verify / draft-decode graphs (issue 13, item 3): on a tiny random fp32 Llama,
greedy output with speculation (n-gram, and a draft model that is the target itself) under
CUDA graphs equals the output without speculation under CUDA graphs, token for token; the
target's verify steps and the draft model's decode and catch-up steps replay graphs; and one
request's steady stream runs no eager forward at all. Writes ``$OUT/verify_parity.json``;
exits 1 on a mismatch.

    python benchmarks/gpu/verify_parity.py --out $OUT      # ~1 minute on one H200
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests.engine.tiny_models

from anyware import Engine, SamplingParams

from tests.engine.tiny_models import build_model, random_prompts


def counters(core) -> list[dict]:
    out = []
    for name, worker in (("target", core.worker), ("draft", core.draft_worker)):
        s = getattr(worker, "strategy", None)
        if s is not None:
            out.append({"model": name, "kind": s.kind, **{
                c: getattr(s, c, None) for c in ("replays", "verify_replays", "prefill_replays",
                                                 "eager_runs", "verify_tokens")}})
    return out


PLATFORM = {"name": "cuda", "graphs": "graphs"}


def run(model: Path, prompts, new_tokens: int, **kw) -> tuple[list[list[int]], list[dict], dict]:
    params = SamplingParams(max_new_tokens=new_tokens, temperature=0, ignore_eos=True)
    if kw.get("execution") == "graphs":
        kw["execution"] = PLATFORM["graphs"]
    with Engine(str(model), platform=PLATFORM["name"], dtype="float32", page_size=16, show_progress=False,
                max_running_requests=8, **kw) as engine:
        res = engine.generate(prompts, [params] * len(prompts))
        strat = engine._loop.call(counters)
        stats = engine.stats()
    spec_stats = {k: getattr(stats, k, None) for k in ("verify_steps", "drafted_tokens", "accepted_tokens",
                                            "mean_acceptance_length")}
    return [r.outputs[0].token_ids for r in res], strat, spec_stats


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--platform", default="cuda")
    ap.add_argument("--graphs", default="graphs",
                    help="the execution kind of the graph runs ('eager' to dry-run the script "
                         "on a platform without graphs; the graph checks then fail)")
    args = ap.parse_args()
    PLATFORM.update(name=args.platform, graphs=args.graphs)
    model = build_model("llama", Path(tempfile.mkdtemp()) / "llama")
    prompts = random_prompts((9, 23, 5, 40, 14, 31), seed=4)
    prompts[1] = [7, 8, 9, 10] * 6  # a pattern prompt lookup finds
    report: dict = {"runs": {}}
    base, strat, _ = run(model, prompts, args.new_tokens, execution="graphs")
    report["runs"]["plain-graphs"] = {"strategies": strat}
    eager, _, _ = run(model, prompts, args.new_tokens, execution="eager")
    report["runs"]["plain-eager"] = {"identical": eager == base}
    ok = True
    for algo in ("ngram", "draft"):
        spec = dict(speculative_algorithm=algo, speculative_num_draft_tokens=4)
        if algo == "draft":
            spec["speculative_draft_model"] = str(model)
        for label, batch in (("batch", prompts), ("single", prompts[1:2])):
            got, strat, stats = run(model, batch, args.new_tokens, execution="graphs", **spec)
            want = base if label == "batch" else base[1:2]
            entry = {"identical": got == want, "strategies": strat, "spec": stats}
            if got != want:
                entry["first_diff"] = next(
                    {"request": i, "got": g, "want": w} for i, (g, w) in enumerate(zip(got, want))
                    if g != w)
            verified = strat[0]["verify_replays"] or 0
            entry["verify_in_graphs"] = verified > 0
            if label == "single":  # a steady stream: nothing eager in any model
                entry["no_eager"] = all(s["eager_runs"] == 0 for s in strat)
            ok &= entry["identical"] and entry["verify_in_graphs"] and entry.get("no_eager", True)
            report["runs"][f"{algo}-{label}"] = entry
            print(algo, label, json.dumps(entry)[:600], flush=True)
    report["ok"] = ok
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "verify_parity.json").write_text(json.dumps(report, indent=1))
    print("verify parity:", "OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
