"""test_tp.py's subprocess: the tiny Llama on the tpu platform with ``tpu_tp=2`` over two
virtual CPU devices (XLA_FLAGS set by the parent before JAX starts). Writes the greedy
tokens and the shardings it used as JSON."""

import json
import sys

from anyware import Engine, SamplingParams


def main() -> int:
    model, prompts_json, out = sys.argv[1:4]
    prompts, new = json.loads(prompts_json)
    cfg = dict(platform="tpu", dtype="float32", show_progress=False, max_running_requests=1,
               chunked_prefill_size=16, page_size=16, context_len=64,
               platform_options={"tpu_tp": 2})
    with Engine(model, **cfg) as engine:
        strategy = engine.core.worker.strategy
        specs = {n: str(p.sharding.spec) for n, p in zip(strategy.names, strategy.params)}
        kv = str(strategy.kv[0].sharding.spec)
        outs = engine.generate(prompts, SamplingParams(max_new_tokens=new, temperature=0,
                                                       ignore_eos=True))
        warmed, after = len(strategy.options.all()), strategy.compilations
    with open(out, "w") as f:
        json.dump({"tokens": [o.outputs[0].token_ids for o in outs], "specs": specs, "kv": kv,
                   "devices": strategy.mesh.size, "warmed": warmed, "compilations": after}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
