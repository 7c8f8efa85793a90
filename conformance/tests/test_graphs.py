"""Tier graphs: the platform's graph-capture (or compiled) execution strategy replaying a tiny
random model must equal eager execution, step after step, as batch sizes, contents and modes
change (a replay of stale inputs or stale metadata, or a mis-padded batch, fails). Not
applicable without the capability. The tiny model pads through ``anyware.plugin.padding``."""

from __future__ import annotations

import pytest
import torch
from anyware.plugin import EagerExecution, ForwardMode
from anyware_conformance.inputs import DTYPES
from anyware_conformance.tinymodel import TinyModel, make_batch

KINDS = {"graphs": "graph_capture", "compiled": "compiled_execution"}


PARAMS = [
    pytest.param(kind, dtype, id=f"{kind}-{dtype}", marks=pytest.mark.anyware(
        tier="graphs", capability=f"graphs.{kind}", needs=(need, "dtype")))
    for kind, need in KINDS.items() for dtype in DTYPES
]


FP8_PARAMS = [
    pytest.param(kind, dtype, id=f"{kind}-fp8-{dtype}", marks=pytest.mark.anyware(
        tier="graphs", capability=f"graphs.{kind}_fp8", needs=(need, "dtype", "quantization.fp8")))
    for kind, need in KINDS.items() for dtype in DTYPES
]


@pytest.mark.parametrize("kind,dtype", PARAMS)
def test_graph_replay(platform, conf, gen, kind, dtype):
    _replay(platform, conf, gen, kind, dtype, fp8=False)


@pytest.mark.parametrize("kind,dtype", FP8_PARAMS)
def test_graph_replay_fp8(platform, conf, gen, kind, dtype):
    """The same steps with W8A8 fp8 projections (``ops.fp8_linear`` inside the captured or
    compiled program: the per-token activation quantisation must run in it, not be frozen
    from the capture)."""
    _replay(platform, conf, gen, kind, dtype, fp8=True)


def _replay(platform, conf, gen, kind, dtype, fp8):
    caps = platform.capabilities()
    dt = getattr(torch, dtype)
    page_size = caps.page_sizes[0]
    per_req = -(-40 // page_size)
    num_pages = 2 + 3 * per_req
    eager_model = TinyModel(platform, dt, page_size, num_pages, seed=1, fp8=fp8)
    graph_model = TinyModel(platform, dt, page_size, num_pages, seed=1, fp8=fp8)
    eager, strategy = EagerExecution(), platform.execution_strategy(kind)
    assert strategy.kind == kind, f"execution_strategy({kind!r}) returned kind {strategy.kind!r}"
    eager.setup(eager_model)
    strategy.setup(graph_model)
    prompts = [torch.randint(1, eager_model.vocab, (n,), generator=gen).tolist() for n in (5, 9, 3)]
    pages = [list(range(1 + i * per_req, 1 + (i + 1) * per_req)) for i in range(3)]
    lens = [0, 0, 0]
    steps = [(ForwardMode.EXTEND, [0, 1, 2])] + [(ForwardMode.DECODE, r) for r in
                                                 ([0, 1, 2], [0, 2], [0, 1, 2], [1, 2], [0, 1, 2])]
    # a MIXED step (a prefill chunk first, then decodes) and a decode over the KV it wrote: a
    # compiled strategy pads any mode (anyware.plugin.padding); a graph strategy runs it eagerly
    steps += [(ForwardMode.MIXED, [1, 0, 2]), (ForwardMode.DECODE, [0, 1, 2])]
    feed = {i: p for i, p in enumerate(prompts)}
    for step, (mode, reqs) in enumerate(steps):
        if mode is ForwardMode.MIXED:
            feed[reqs[0]] = feed[reqs[0]] + torch.randint(1, eager_model.vocab, (4,),
                                                          generator=gen).tolist()
        def batch_for(model, reqs=reqs, mode=mode):
            return make_batch(model, mode, [feed[i] for i in reqs], [lens[i] for i in reqs],
                              [pages[i] for i in reqs])
        want = eager.run(batch_for(eager_model))
        got = strategy.run(batch_for(graph_model))
        conf.on_device("logits", got)
        conf.close(f"step {step} ({mode.value}, requests {reqs}) logits", got, want,
                   op="model_logits", dtype=dtype, reduction=64)
        nxt = want.argmax(dim=-1).tolist()
        for j, i in enumerate(reqs):
            lens[i] += len(feed[i])
            feed[i] = [nxt[j]]
    strategy.close()


PREFILL_PARAMS = [
    pytest.param(dtype, id=f"graphs-{dtype}", marks=pytest.mark.anyware(
        tier="graphs", capability="graphs.padded_prefill",
        needs=("graph_capture", "attention.padded_prefill", "dtype")))
    for dtype in DTYPES
]


@pytest.mark.parametrize("dtype", PREFILL_PARAMS)
def test_prefill_graph_replay(platform, conf, gen, dtype):
    """One fresh request at a time (what prefill graphs replay, padded to a token bucket):
    logits equal eager execution, and the KV the replay wrote serves the decode steps after
    it (a padded row that leaks into the cache or a real row that is lost fails)."""
    caps = platform.capabilities()
    dt = getattr(torch, dtype)
    page_size = caps.page_sizes[0]
    lengths = (7, 16, 45, 64, 100)
    per_req = -(-(max(lengths) + 4) // page_size)
    num_pages = 1 + len(lengths) * per_req
    eager_model = TinyModel(platform, dt, page_size, num_pages, seed=2)
    graph_model = TinyModel(platform, dt, page_size, num_pages, seed=2)
    eager, strategy = EagerExecution(), platform.execution_strategy("graphs")
    eager.setup(eager_model)
    strategy.setup(graph_model)
    for i, n in enumerate(lengths):
        pages = [list(range(1 + i * per_req, 1 + (i + 1) * per_req))]
        feed, pre = torch.randint(1, eager_model.vocab, (n,), generator=gen).tolist(), 0
        for step in range(4):  # the prefill, then decode steps over the KV it wrote
            mode = ForwardMode.EXTEND if step == 0 else ForwardMode.DECODE
            want = eager.run(make_batch(eager_model, mode, [feed], [pre], pages))
            got = strategy.run(make_batch(graph_model, mode, [feed], [pre], pages))
            conf.on_device("logits", got)
            conf.close(f"prompt of {n} tokens, step {step} ({mode.value}) logits", got, want,
                       op="model_logits", dtype=dtype, reduction=64)
            pre += len(feed)
            feed = [int(want.argmax(dim=-1)[0])]
    strategy.close()


VERIFY_PARAMS = [
    pytest.param(dtype, id=f"graphs-{dtype}", marks=pytest.mark.anyware(
        tier="graphs", capability="graphs.padded_verify",
        needs=("graph_capture", "attention.padded_verify", "dtype")))
    for dtype in DTYPES
]


@pytest.mark.parametrize("dtype", VERIFY_PARAMS)
def test_verify_graph_replay(platform, conf, gen, dtype):
    """Speculative steps through the graph strategy of a program that verifies k = 3 drafts
    (``StepProgram.verify_tokens = 4``): chain verifies of k and of fewer drafts, a MIXED step
    of verifies and decodes, a 2-token catch-up over a prefix (what a draft model runs) and
    decodes, as batch sizes change. Logits equal eager execution, and the KV each step wrote
    serves the steps after it (a verify replayed with stale lengths, a mis-padded row or a
    lost logit row fails)."""
    caps = platform.capabilities()
    dt = getattr(torch, dtype)
    page_size = caps.page_sizes[0]
    per_req = -(-64 // page_size)
    num_pages = 1 + 4 * per_req
    eager_model, graph_model = (TinyModel(platform, dt, page_size, num_pages, seed=3,
                                          verify_tokens=4) for _ in range(2))
    eager, strategy = EagerExecution(), platform.execution_strategy("graphs")
    eager.setup(eager_model)
    strategy.setup(graph_model)
    pages = [list(range(1 + i * per_req, 1 + (i + 1) * per_req)) for i in range(4)]
    lens, last = [0] * 4, [0] * 4
    V, M, E, D = ForwardMode.VERIFY, ForwardMode.MIXED, ForwardMode.EXTEND, ForwardMode.DECODE
    steps = [(E, [0, 1, 2, 3], [8, 5, 11, 6])]  # prompts (drafts column: prompt lengths)
    steps += [(V, [0, 1, 2], [3, 3, 3]), (V, [3], [3]), (V, [0, 1, 2, 3], [1, 1, 1, 1]),
              (M, [0, 1, 3], [3, 0, 2]), (E, [1, 2, 3], [1, 1, 1]), (D, [0, 2], [0, 0]),
              (V, [1, 3], [3, 3]), (M, [3, 0, 2], [0, 3, 1])]
    for step, (mode, reqs, nd) in enumerate(steps):
        if step == 0:
            feed = [torch.randint(1, eager_model.vocab, (n,), generator=gen).tolist() for n in nd]
            counts = [1] * len(reqs)
        else:
            feed = [[last[i], *torch.randint(1, eager_model.vocab, (d,), generator=gen).tolist()]
                    for i, d in zip(reqs, nd)]
            counts = [1 if mode is E else d + 1 for d in nd]

        def batch_for(model, reqs=reqs, feed=feed, mode=mode, counts=counts):
            return make_batch(model, mode, feed, [lens[i] for i in reqs],
                              [pages[i] for i in reqs], logit_counts=counts)
        want = eager.run(batch_for(eager_model))
        got = strategy.run(batch_for(graph_model))
        conf.on_device("logits", got)
        conf.close(f"step {step} ({mode.value}, requests {reqs}, drafts {nd}) logits", got,
                   want, op="model_logits", dtype=dtype, reduction=64)
        row = 0
        for i, f, c in zip(reqs, feed, counts):
            lens[i] += len(f)
            row += c
            last[i] = int(want[row - 1].argmax())
    strategy.close()
