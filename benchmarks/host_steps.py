"""Host time per engine step at many requests, on the CPU (the small-model, host-bound case).

The shape of the 0.5B GPU run ("The server under load" in docs/performance.md): 1000
requests of 512 prompt / 256 output tokens, all at once, ``max_running_requests`` 256, page
size 16, radix cache and overlap scheduling on, and a KV pool smaller than the demand (the
H200 held ~524k tokens for 768k of demand: ``--kv-fraction 0.68``), so the cache evicts.
A tiny model (tests/engine/tiny_models.py) gives the engine its shapes; its forward is
replaced by a stub (logits from each row's token and position: outputs still follow the
schedule; ``--real-forward`` runs the model), and the forward is timed and subtracted,
leaving the host's share of each step (sampling included). The engine core is stepped from this
thread (no front end), as the engine's step thread does.

    python benchmarks/host_steps.py                      # timed run, then a cProfile run
    python benchmarks/host_steps.py --input 256 --output 128 --no-profile
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from anyware import Engine, SamplingParams
from anyware.request.request import Request

from tests.engine.tiny_models import build_model

# tiny llama: 2 layers x 2 KV heads x head_dim 16, K and V, fp32
KV_BYTES_PER_TOKEN = 2 * 2 * 2 * 16 * 4
VOCAB = 300


def _timed(obj, name: str, stats: dict) -> None:
    fn = getattr(obj, name)

    def inner(*a, **k):
        t0 = time.perf_counter()
        out = fn(*a, **k)
        stats["s"] += time.perf_counter() - t0
        return out
    setattr(obj, name, inner)


def _stub_forward(batch, trace: list):
    """Logits that depend on each logit row's token and position (so outputs follow the
    schedule), at a fraction of the tiny model's CPU cost. ``trace`` gets a hash of each
    step's KV slots and lengths (timed with the forward, so not in the host time): equal
    traces mean the same schedule and the same pages."""
    trace.append(hash((int.from_bytes(batch.mode.value.encode(), "little"), tuple(batch.out_slots.tolist()),
                       tuple(batch.seq_lens_cpu), tuple(batch.page_table.flatten().tolist()))))
    rows = batch.logits_indices
    tok = (batch.input_ids[rows] * 31 + batch.positions[rows]) % VOCAB
    logits = torch.zeros(rows.shape[0], VOCAB)
    logits[torch.arange(rows.shape[0]), tok] = 1.0
    return logits


def run(path: Path, args, profile: bool) -> dict:
    demand = args.requests * (args.input + args.output)
    kv_tokens = int(demand * args.kv_fraction)
    opts = dict(platform="cpu", dtype="float32", page_size=16,
                max_running_requests=args.max_running, show_progress=False,
                kv_cache_bytes=kv_tokens * KV_BYTES_PER_TOKEN, overlap_schedule=True,
                schedule_conservativeness=args.schedule_conservativeness)
    with Engine(str(path), **opts) as e:
        core = e.core  # the loop thread is idle (no requests): stepping from here is safe
        fwd, trace = {"s": 0.0}, []
        if not args.real_forward:
            core.worker.strategy.run = lambda batch: _stub_forward(batch, trace)
        phases = {}  # host seconds in each part of a step (the forward's own time excluded)
        for obj, name in ((core.scheduler, "schedule"), (core.scheduler, "commit"),
                          (core.scheduler, "process"), (core.worker, "forward"),
                          (core.sampler, "sample_step")):
            phases[name] = {"s": 0.0}
            _timed(obj, name, phases[name])
        _timed(core.worker.strategy, "run", fwd)
        g = torch.Generator().manual_seed(0)
        params = SamplingParams(max_new_tokens=args.output, temperature=0, ignore_eos=True)
        outs: dict[str, list[int]] = {}
        for i in range(args.requests):
            rid = f"r{i}"
            outs[rid] = []
            core.add(Request(rid, torch.randint(10, 300, (args.input,), generator=g).tolist(),
                             params, i, lambda d, o=outs[rid]: o.extend(d.token_ids)))
        prof = cProfile.Profile() if profile else None
        steps = 0
        t0 = time.perf_counter()
        if prof:
            prof.enable()
        while core.has_work() and (args.max_steps <= 0 or steps < args.max_steps):
            core.step()
            steps += 1
        if prof:
            prof.disable()
        wall = time.perf_counter() - t0
        core.check_invariants()
        st = core.stats()
    res = {
        "steps": steps, "wall_s": round(wall, 2), "forward_s": round(fwd["s"], 2),
        "host_ms_per_step": round((wall - fwd["s"]) / steps * 1e3, 3),
        "phases_ms_per_step": {
            k: round((v["s"] - (fwd["s"] if k == "forward" else 0)) / steps * 1e3, 3)
            for k, v in phases.items()},
        "kv_capacity_tokens": kv_tokens, "evicted_pages": st.evicted_pages,
        "retractions": st.retractions, "generated": st.generated_tokens,
        "outputs_digest": hash(tuple(tuple(outs[f"r{i}"]) for i in range(args.requests))),
        "schedule_digest": hash(tuple(trace)),
    }
    if prof:
        s = io.StringIO()
        ps = pstats.Stats(prof, stream=s)
        total = sum(v[2] for v in ps.stats.values())  # tottime over all functions
        res["profile_total_s"] = round(total, 2)
        ps.sort_stats(args.sort).print_stats(args.top)
        res["profile"] = s.getvalue()
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--input", type=int, default=512)
    ap.add_argument("--output", type=int, default=256)
    ap.add_argument("--max-running", type=int, default=256)
    ap.add_argument("--kv-fraction", type=float, default=0.68,
                    help="KV pool tokens / total demand (requests x (input + output))")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many (0: all)")
    ap.add_argument("--schedule-conservativeness", type=float, default=1.0,
                    help="the engine's output reserve at admission (0: off)")
    ap.add_argument("--real-forward", action="store_true",
                    help="run the tiny model (slow on CPU) instead of a stub forward")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--profile-only", action="store_true")
    ap.add_argument("--sort", default="cumulative")
    ap.add_argument("--top", type=int, default=45)
    args = ap.parse_args()
    torch.set_num_threads(1)
    path = build_model("llama", Path(tempfile.mkdtemp()),
                       max_position_embeddings=max(512, args.input + args.output))
    if not args.profile_only:
        print({k: v for k, v in run(path, args, profile=False).items()}, flush=True)
    if not args.no_profile:
        res = run(path, args, profile=True)
        prof = res.pop("profile")
        print(res)
        print(prof)


if __name__ == "__main__":
    main()
