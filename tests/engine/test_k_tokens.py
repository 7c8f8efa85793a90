"""k tokens per step through the real engine: a verify step runs the target over a request's
last token and its drafts (VERIFY or MIXED forwards), samples every position as a one-token
step would, keeps the agreeing prefix plus one, and releases the rejected drafts' KV.

The drafts come from an oracle that knows the run's output without speculation and corrupts
some of it, so acceptance lengths vary; the outputs (greedy, seeded sampling with penalties,
logprobs) must be identical to the run without speculation.
"""

import dataclasses
import random

import pytest
from anyware import Engine, SamplingParams

from tests.engine.conftest import ENGINE_DEFAULTS
from tests.engine.tiny_models import random_prompts


def outputs(res):
    return [[(c.token_ids, c.finish_reason,
              [(lp.token_id, round(lp.logprob, 4)) for lp in (c.logprobs or [])])
             for c in r.outputs] for r in res]


class Oracle:
    """Proposes the known continuation of a request, right for a random number of tokens."""

    def __init__(self, known: dict[tuple, list[int]], accept: float, seed: int) -> None:
        self.known, self.accept, self.rng = known, accept, random.Random(seed)

    def __call__(self, req, n):
        cont = self.known.get(tuple(req.prompt_ids), [])[len(req.output_ids):]
        out = []
        for t in cont[: self.rng.randint(1, n)]:
            out.append(t if self.rng.random() < self.accept else (t + 1) % 64)
        return out


def run(model, prompts, params, drafts=None, k=0, **kw):
    with Engine(str(model), **ENGINE_DEFAULTS, **kw) as engine:
        if drafts is not None:
            def install(core):
                s = core.scheduler
                s.cfg, s.drafts = dataclasses.replace(s.cfg, num_draft_tokens=k), drafts
            engine._loop.call(install)
        res = engine.generate(prompts, params)
        engine.check_invariants()
        counters = engine._loop.call(lambda core: dataclasses.replace(core.scheduler.counters))
    return res, counters


@pytest.mark.parametrize("page_size,chunk", [(4, 2048), (16, 8)])
def test_greedy_output_identical_with_k_tokens_per_step(model_dir, page_size, chunk):
    model = model_dir("llama")
    prompts = random_prompts((5, 17, 9, 30), seed=4)
    params = [SamplingParams(max_new_tokens=n, temperature=0, ignore_eos=i % 2 == 0)
              for i, n in enumerate((20, 9, 16, 12))]
    kw = dict(page_size=page_size, chunked_prefill_size=chunk)
    base, _ = run(model, prompts, params, **kw)
    known = {tuple(p): r.outputs[0].token_ids for p, r in zip(prompts, base)}
    spec, c = run(model, prompts, params, Oracle(known, 0.8, 1), k=4, **kw)
    assert outputs(spec) == outputs(base)
    assert c.verify_steps > 0 and 0 < c.accepted_tokens < c.drafted_tokens


def test_seeded_sampling_penalties_logprobs_identical(model_dir):
    model = model_dir("qwen3")
    prompts = random_prompts((7, 12, 20), seed=5)
    params = [
        SamplingParams(max_new_tokens=14, temperature=0.9, top_p=0.9, top_k=40, seed=3,
                       ignore_eos=True, logprobs=3),
        SamplingParams(max_new_tokens=10, temperature=0, repetition_penalty=1.3,
                       frequency_penalty=0.5, presence_penalty=0.4, ignore_eos=True),
        SamplingParams(max_new_tokens=12, temperature=1.2, seed=8, ignore_eos=True,
                       repetition_penalty=1.2, logprobs=0),
    ]
    base, _ = run(model, prompts, params, page_size=8)
    known = {tuple(p): r.outputs[0].token_ids for p, r in zip(prompts, base)}
    spec, c = run(model, prompts, params, Oracle(known, 0.9, 2), k=3, page_size=8)
    assert outputs(spec) == outputs(base)
    assert c.accepted_tokens > 0


def test_garbage_drafts_change_nothing_and_all_right_drafts_accept_all(model_dir):
    model = model_dir("llama")
    prompts = random_prompts((6, 11), seed=9)
    params = SamplingParams(max_new_tokens=13, temperature=0, ignore_eos=True)
    base, _ = run(model, prompts, params, page_size=8)
    known = {tuple(p): r.outputs[0].token_ids for p, r in zip(prompts, base)}
    spec, c = run(model, prompts, params, Oracle(known, 0.0, 3), k=4, page_size=8)
    assert outputs(spec) == outputs(base) and c.accepted_tokens == 0
    spec, c = run(model, prompts, params, Oracle(known, 1.0, 3), k=4, page_size=8)
    assert outputs(spec) == outputs(base) and c.accepted_tokens == c.drafted_tokens > 0
