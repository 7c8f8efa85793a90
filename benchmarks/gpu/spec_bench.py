"""Mechanism efficiency of speculative decoding on the GPU (issue 13): Llama-3.1-8B shape with
dummy weights, batch 1 and 32, a benchmark-only oracle drafter whose drafts are right with a
set per-token probability ``a`` (chain acceptance: mean acceptance length
``(1 - a^(k+1)) / (1 - a)`` tokens per verify at k = 4; a = 0.35 / 0.62 / 0.83 give about
1.5 / 2.5 / 3.5). Reports decode tok/s, the speedup over no speculation and the *measured*
mean acceptance length beside the set one, as JSON under ``$OUT``.

The oracle follows the run's own tokens: the dummy target is made deterministic per token —
each layer's output projections (``o_proj``, ``down_proj``) scaled by ``--layer-scale``
(0.01: the residual stream stays the token's embedding, the compute is the same dense
work) and ``lm_head`` row ``y`` set to embedding row ``y - 1`` — so its greedy next token is
``last + 1`` (mod vocab) with a margin that bf16 rounding in the verify and decode kernels
cannot flip. The oracle proposes ``last + 1, last + 2, ...``, each kept right with
probability ``a`` (a wrong one is off by one). ``chain_ok`` reports the fraction of the
reference run's tokens that follow the rule (1.0 expected).

Each setting runs with the automatic off-switch (default) and without it
(``auto_off=false``), with a fresh switch per run; rows show the switch's paused steps.
``--eagle3`` adds an EAGLE-3 head of the 8B shape with random weights (its acceptance is
meaningless, ~0): what drafting with a head costs per step (``step_cost_vs_decode``: draft +
verify time over a decode step, so a head of acceptance length ``A`` could reach
``A / step_cost_vs_decode``), and whether the switch pauses it.

The oracle costs no device time, so its speedup is the mechanism's (verify forward,
acceptance on the device, KV truncation, host scheduling); the ideal is the measured
acceptance length.

    python benchmarks/gpu/spec_bench.py [--eagle3]        # < 6 minutes on one H200
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import subprocess
import tempfile
import time
from pathlib import Path

import torch
from anyware import Engine, SamplingParams
from anyware.spec import Drafter, SpecSwitch

ACCEPT = {1.5: 0.35, 2.5: 0.62, 3.5: 0.83}  # target mean acceptance length -> per-token a


class Oracle(Drafter):
    """Benchmark only: drafts ``last + j`` (the deterministic target's greedy chain), each
    right with probability ``accept`` (a wrong one is off by one, which the target rejects)."""

    name = "oracle"

    def __init__(self, accept: float, vocab: int, seed: int = 0) -> None:
        self.accept, self.vocab = accept, vocab
        self.rng = random.Random(seed)

    def propose(self, request, max_tokens):
        last = request.tokens(request.seq_len - 1, request.seq_len)[0]
        return [(last + j + (0 if self.rng.random() < self.accept else 1)) % self.vocab
                for j in range(1, max_tokens + 1)]


@torch.inference_mode()
def make_deterministic(core, layer_scale: float) -> None:
    """The target's greedy next token becomes ``last + 1`` (see the module docstring)."""
    model = core.worker.model
    for name, p in model.named_parameters():
        if name.endswith(("o_proj.weight", "down_proj.weight")):
            p.mul_(layer_scale)
    embed = model.embed_tokens.weight
    if model.lm_head is None:
        raise SystemExit("tied embeddings: the deterministic target needs its own lm_head")
    model.lm_head.weight.copy_(embed.roll(1, dims=0))  # row y = embedding of y - 1


def chain_ok(prompts, outputs, vocab: int) -> float:
    good = total = 0
    for p, out in zip(prompts, outputs):
        prev = p[-1]
        for t in out:
            good += t == (prev + 1) % vocab
            total += 1
            prev = t
    return good / max(total, 1)


def timed(engine: Engine, prompts, params) -> tuple[list[list[int]], float]:
    t0 = time.perf_counter()
    res = engine.generate(prompts, params)
    return [r.outputs[0].token_ids for r in res], time.perf_counter() - t0


def eagle3_head_dir(m) -> Path:
    """A config-only EAGLE-3 head for the target config ``m``'s shape (random weights via
    load_format dummy): one layer, draft vocabulary 32000 as the published Llama-3.1-8B head
    (at most the target's)."""
    out = Path(tempfile.mkdtemp(prefix="eagle3-head-"))
    (out / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLMEagle3"], "hidden_size": m.hidden_size,
        "intermediate_size": m.intermediate_size, "num_hidden_layers": 1,
        "num_attention_heads": m.num_heads, "num_key_value_heads": m.num_kv_heads,
        "vocab_size": m.vocab_size, "draft_vocab_size": min(32000, m.vocab_size), "rms_norm_eps": m.rms_norm_eps,
        "rope_theta": m.rope_theta, "rope_scaling": m.rope_scaling,
        "max_position_embeddings": m.max_position_embeddings,
        # EAGLE-3's default layers (2, L // 2, L - 3) need L >= 4; a tiny smoke-test target
        # reads its first layers
        **({} if m.num_layers >= 4 else {"eagle_config": {
            "eagle_aux_hidden_state_layer_ids": [-1, 0, m.num_layers - 2]}})}))
    return out


def git_commit() -> str:
    if os.environ.get("ANYWARE_COMMIT"):  # the device copy: its .git is absent or stale
        return os.environ["ANYWARE_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=False).stdout.strip()
    except OSError:
        return ""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="llama-3.1-8b")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--prompt-len", type=int, default=256)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--layer-scale", type=float, default=0.01)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--platform", default=None)
    ap.add_argument("--eagle3", action="store_true", help="also time a random EAGLE-3 head")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args()
    common = dict(load_format="dummy", show_progress=False, dtype=args.dtype,
                  platform=args.platform, speculative_num_draft_tokens=args.k)
    rows: list[dict] = []
    engine = Engine(args.model, speculative_algorithm="ngram", **common)
    model_cfg = engine.model_config
    vocab = model_cfg.vocab_size
    engine._loop.call(lambda core: make_deterministic(core, args.layer_scale))
    base_tps: dict[int, float] = {}

    def install(drafter, k, auto_off, eng=None):  # no default reference: del frees it
        def go(core):
            if drafter is not None:
                core.speculator.drafter = drafter
            core.speculator.switch = SpecSwitch(enabled=auto_off)
            core.scheduler.cfg = type(core.scheduler.cfg)(**{
                **core.scheduler.cfg.__dict__, "num_draft_tokens": k})
        (eng if eng is not None else engine)._loop.call(go)

    def measure(eng, prompts, params, label, bs, **extra):
        before = eng.stats()
        out, s = timed(eng, prompts, params)
        after = eng.stats()
        steps = after.verify_steps - before.verify_steps
        acc = after.accepted_tokens - before.accepted_tokens
        mean_len = (acc + steps) / steps if steps else 0.0
        tps = bs * args.new_tokens / s
        row = dict(batch=bs, run=label, tok_s=tps, speedup=tps / base_tps[bs] if bs in base_tps
                   else 1.0, measured_accept_len=mean_len, verify_steps=steps,
                   paused_steps=after.spec_paused_steps - before.spec_paused_steps,
                   switch_offs=after.spec_switch_offs - before.spec_switch_offs, **extra)
        rows.append(row)
        print(json.dumps(row), flush=True)
        return out

    prompts_by_bs = {}
    for bs in (int(b) for b in args.batches.split(",")):
        rng = random.Random(bs)
        prompts = [[rng.randrange(3, vocab) for _ in range(args.prompt_len)] for _ in range(bs)]
        prompts_by_bs[bs] = prompts
        params = SamplingParams(max_new_tokens=args.new_tokens, temperature=0, ignore_eos=True)
        install(Oracle(0.0, vocab), 0, True)  # k = 0: no speculation
        timed(engine, prompts[:1], SamplingParams(max_new_tokens=8, ignore_eos=True))  # warm
        base_out, base_s = timed(engine, prompts, params)
        base_tps[bs] = bs * args.new_tokens / base_s
        rows.append(dict(batch=bs, run="no speculation", tok_s=base_tps[bs], speedup=1.0,
                         chain_ok=chain_ok(prompts, base_out, vocab)))
        print(json.dumps(rows[-1]), flush=True)
        install(Oracle(1.0, vocab), args.k, False)  # warm the verify path (eager kernels compile)
        timed(engine, prompts, SamplingParams(max_new_tokens=16, temperature=0, ignore_eos=True))
        for length, a in ACCEPT.items():
            for auto_off in (True, False):
                install(Oracle(a, vocab, seed=bs), args.k, auto_off)
                out = measure(engine, prompts, params, "oracle", bs, set_accept_len=length,
                              accept_prob=a, auto_off=auto_off)
                rows[-1]["identical"] = out == base_out
                # the oracle costs nothing: the ideal is the measured acceptance length
                rows[-1]["ideal_speedup"] = rows[-1]["measured_accept_len"]
    engine.shutdown()
    engine = None  # free the target's weights, KV pool and graphs before the next engine
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    write(args, rows)

    if args.eagle3:  # what a head's drafting costs (random weights: acceptance ~0)
        head = eagle3_head_dir(model_cfg)
        eng = Engine(args.model, speculative_algorithm="eagle3",
                     speculative_draft_model=str(head), **common)
        for bs, prompts in prompts_by_bs.items():
            params = SamplingParams(max_new_tokens=args.new_tokens, temperature=0,
                                    ignore_eos=True)
            install(None, args.k, False, eng)
            timed(eng, prompts, SamplingParams(max_new_tokens=16, ignore_eos=True))  # warm
            for auto_off in (True, False):
                install(None, args.k, auto_off, eng)
                measure(eng, prompts, params, "eagle3 random head", bs, auto_off=auto_off)
                if not auto_off:  # ~1 token per step: (draft + verify) time per decode time
                    rows[-1]["step_cost_vs_decode"] = 1 / rows[-1]["speedup"]
        eng.shutdown()

    write(args, rows)


def write(args, rows) -> None:
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "spec_bench.json")
    with open(path, "w") as f:
        json.dump(dict(model=args.model, k=args.k, prompt_len=args.prompt_len,
                       new_tokens=args.new_tokens, layer_scale=args.layer_scale,
                       commit=git_commit(), device=torch.cuda.get_device_name()
                       if torch.cuda.is_available() else "cpu", rows=rows), f, indent=2)
    print("wrote", path)


if __name__ == "__main__":
    main()
