"""Mechanism efficiency of speculative decoding on the GPU (issue 13): Llama-3.1-8B shape with
dummy weights, batch 1 and 32, a benchmark-only oracle drafter that proposes the target's
known greedy continuation and keeps each draft right with probability ``a`` (chain
acceptance: mean acceptance length ``(1 - a^(k+1)) / (1 - a)`` tokens per verify at k = 4;
a = 0.35 / 0.62 / 0.83 give about 1.5 / 2.5 / 3.5). Reports decode tok/s and the speedup over
no speculation, with the measured mean acceptance length, as JSON under ``$OUT``.

The oracle costs no device time, so the speedup is the mechanism's (verify forward, acceptance
on the device, KV truncation, host scheduling): the ideal is the acceptance length.

    python benchmarks/gpu/spec_bench.py            # < 6 minutes on one H200
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time

from anyware import Engine, SamplingParams
from anyware.spec import Drafter

ACCEPT = {1.5: 0.35, 2.5: 0.62, 3.5: 0.83}  # target mean acceptance length -> per-token a


class Oracle(Drafter):
    """Benchmark only: the known greedy continuation, each draft kept right with probability
    ``accept`` (a wrong one is the right token + 1, which the target rejects)."""

    name = "oracle"

    def __init__(self, known: dict, accept: float, vocab: int, seed: int = 0) -> None:
        self.known, self.accept, self.vocab = known, accept, vocab
        self.rng = random.Random(seed)

    def propose(self, request, max_tokens):
        cont = self.known.get(tuple(request.prompt_ids), [])[len(request.output_ids):]
        return [t if self.rng.random() < self.accept else (t + 1) % self.vocab
                for t in cont[:max_tokens]]


def timed(engine: Engine, prompts, params) -> tuple[list[list[int]], float]:
    t0 = time.perf_counter()
    res = engine.generate(prompts, params)
    return [r.outputs[0].token_ids for r in res], time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="llama-3.1-8b")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--prompt-len", type=int, default=256)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args()
    engine = Engine(args.model, load_format="dummy", show_progress=False, dtype="bfloat16",
                    speculative_algorithm="ngram", speculative_num_draft_tokens=args.k)
    vocab = engine.model_config.vocab_size
    rows = []
    for bs in (int(b) for b in args.batches.split(",")):
        rng = random.Random(bs)
        prompts = [[rng.randrange(3, vocab) for _ in range(args.prompt_len)] for _ in range(bs)]
        params = SamplingParams(max_new_tokens=args.new_tokens, temperature=0, ignore_eos=True)

        def set_drafter(d, k):
            def install(core):
                core.speculator.drafter = d
                core.scheduler.cfg = type(core.scheduler.cfg)(**{
                    **core.scheduler.cfg.__dict__, "num_draft_tokens": k})
            engine._loop.call(install)

        set_drafter(Oracle({}, 0.0, vocab), 0)  # k = 0: no speculation
        timed(engine, prompts[:1], SamplingParams(max_new_tokens=8, ignore_eos=True))  # warm
        base_out, base_s = timed(engine, prompts, params)
        known = {tuple(p): o for p, o in zip(prompts, base_out)}
        base_tps = bs * args.new_tokens / base_s
        rows.append(dict(batch=bs, target_accept_len=None, tok_s=base_tps, speedup=1.0))
        print(f"batch {bs:3d} no speculation: {base_tps:9.1f} tok/s", flush=True)
        for length, a in ACCEPT.items():
            set_drafter(Oracle(known, a, vocab, seed=bs), args.k)
            before = engine.stats()
            out, s = timed(engine, prompts, params)
            after = engine.stats()
            steps = after.verify_steps - before.verify_steps
            acc = after.accepted_tokens - before.accepted_tokens
            mean_len = (acc + steps) / steps if steps else 0.0
            tps = bs * args.new_tokens / s
            rows.append(dict(batch=bs, target_accept_len=length, accept_prob=a,
                             measured_accept_len=mean_len, tok_s=tps, speedup=tps / base_tps,
                             identical=out == base_out))
            print(f"batch {bs:3d} accept len {mean_len:.2f} (target {length}): {tps:9.1f} "
                  f"tok/s  x{tps / base_tps:.2f}  identical={out == base_out}", flush=True)
    engine.shutdown()
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "spec_bench.json")
    with open(path, "w") as f:
        json.dump(dict(model=args.model, k=args.k, prompt_len=args.prompt_len,
                       new_tokens=args.new_tokens, rows=rows), f, indent=2)
    print("wrote", path)


if __name__ == "__main__":
    main()
