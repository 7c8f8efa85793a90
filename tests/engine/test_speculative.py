"""Speculative decoding through the engine: greedy output with each drafter (n-gram prompt
lookup, a draft model) is token-identical to no speculation, across page sizes, chunked
prefill, mixed batches, retraction and the radix cache; a drafter that is always wrong keeps
nothing and changes nothing; one that is always right keeps every draft (k + 1 tokens per
verify); a platform without the verify capability is a start-up error."""

import dataclasses

import pytest
from anyware import Engine, SamplingParams
from anyware.plugin import CapabilityError
from anyware.request import InvalidRequestError
from anyware.spec import Drafter

from tests.engine.conftest import ENGINE_DEFAULTS
from tests.engine.tiny_models import random_prompts


def prompts_with_repeats():
    base = random_prompts((9, 23, 5, 14), seed=11)
    loop = [7, 8, 9, 10] * 5  # a pattern prompt lookup finds
    shared = base[1][:16]  # a shared prefix the radix cache serves
    return [base[0], base[1], loop, [*shared, 40, 41], base[2], base[1], shared + base[3]]


def run(model, prompts, params, drafter=None, waves=1, **kw):
    """Generate ``prompts``; with ``waves=2`` the first three go first, so the second wave
    finds their prefixes in the radix cache."""
    with Engine(str(model), **ENGINE_DEFAULTS, **kw) as engine:
        if drafter is not None:
            def install(core):
                core.speculator.drafter = drafter
            engine._loop.call(install)
        res = []
        if waves == 2:
            res = engine.generate(prompts[:3], params[:3])
        res += engine.generate(prompts, params)
        engine.check_invariants()
        counters = engine._loop.call(lambda core: dataclasses.replace(core.scheduler.counters))
    return [[(c.token_ids, c.finish_reason) for c in r.outputs] for r in res], counters


PARAMS = [SamplingParams(max_new_tokens=n, temperature=0, ignore_eos=i % 3 != 0)
          for i, n in enumerate((24, 17, 30, 12, 21, 9, 26))]


@pytest.mark.parametrize("algorithm", ["ngram", "draft"])
@pytest.mark.parametrize("setting", [
    dict(page_size=4),
    dict(page_size=16, chunked_prefill_size=8, mixed_batches=False),
    dict(page_size=4, chunked_prefill_size=16, disable_radix_cache=True),
    # tight, and no output reserve at admission: requests are retracted
    dict(page_size=4, kv_cache_bytes=64 << 10, schedule_conservativeness=0),
], ids=["p4", "p16-chunk8-unmixed", "p4-chunk16-nocache", "p4-retract"])
def test_greedy_output_identical_to_no_speculation(model_dir, algorithm, setting):
    """The draft model is the target itself: if its KV were ever out of step with the
    request's tokens (new request, cached prefix, retraction, rejected drafts), some proposal
    would differ from the target's greedy token; so every draft must be accepted."""
    model = model_dir("llama")
    prompts = prompts_with_repeats()
    base, base_c = run(model, prompts, PARAMS, waves=2, **setting)
    spec = dict(speculative_algorithm=algorithm, speculative_num_draft_tokens=3)
    if algorithm == "draft":
        spec["speculative_draft_model"] = str(model)
    got, c = run(model, prompts, PARAMS, waves=2, **setting, **spec)
    assert got == base
    assert c.verify_steps > 0 and c.drafted_tokens > 0 and c.accepted_tokens > 0
    if algorithm == "draft":
        assert c.accepted_tokens == c.drafted_tokens
    if "kv_cache_bytes" in setting:
        assert c.retractions > 0 and base_c.retractions > 0
    if "disable_radix_cache" not in setting:
        assert c.cached_prompt_tokens > 0


class Garbage(Drafter):
    """Proposes tokens the target never produces next (the greedy token plus one)."""

    def __init__(self, known):
        self.known = known

    def propose(self, request, max_tokens):
        cont = self.known[tuple(request.prompt_ids)][len(request.output_ids):]
        return [(t + 1) % 300 for t in cont[:max_tokens]]


def test_garbage_drafter_keeps_nothing_and_changes_nothing(model_dir):
    model = model_dir("llama")
    prompts = random_prompts((6, 11, 30), seed=9)
    params = SamplingParams(max_new_tokens=15, temperature=0, ignore_eos=True)
    base, _ = run(model, prompts, params, page_size=8)
    known = {tuple(p): out[0][0] for p, out in zip(prompts, base)}
    got, c = run(model, prompts, params, Garbage(known), page_size=8,
                 speculative_algorithm="ngram", speculative_num_draft_tokens=4)
    assert got == base and c.drafted_tokens > 0 and c.accepted_tokens == 0


class FakeClock:
    """Step times for the off-switch without a real clock: each reading advances one unit."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        self.t += 1.0
        return self.t


class Costly(Garbage):
    """Drafts (the right continuation, or ``Garbage``'s) costing ``cost`` units per step."""

    def __init__(self, known, clock, cost, right):
        super().__init__(known)
        self.clock, self.cost, self.right = clock, cost, right

    def prepare(self, items):
        if items:
            self.clock.t += self.cost

    def propose(self, request, max_tokens):
        if not self.right:
            return super().propose(request, max_tokens)
        return self.known[tuple(request.prompt_ids)][len(request.output_ids):][:max_tokens]


@pytest.mark.parametrize("right", [False, True], ids=["garbage", "right"])
def test_off_switch_pauses_drafts_that_do_not_pay(model_dir, right):
    """Garbage drafts costing ten decode steps' time: the switch pauses speculation (output
    unchanged); right drafts (k + 1 tokens per verify) costing one: it never does."""
    model = model_dir("llama")
    prompts = random_prompts((6, 11, 30), seed=9)
    params = SamplingParams(max_new_tokens=150, temperature=0, ignore_eos=True)
    base, _ = run(model, prompts, params, page_size=8)
    known = {tuple(p): out[0][0] for p, out in zip(prompts, base)}
    clock = FakeClock()
    with Engine(str(model), **ENGINE_DEFAULTS, page_size=8, speculative_algorithm="ngram",
                speculative_num_draft_tokens=4) as engine:
        def install(core):
            core.speculator.drafter = Costly(known, clock, 1.0 if right else 10.0, right)
            core.speculator.clock = clock
        engine._loop.call(install)
        res = engine.generate(prompts, params)
        stats = engine.stats()
    assert [[(c.token_ids, c.finish_reason) for c in r.outputs] for r in res] == base
    assert stats.verify_steps > 0
    if right:
        assert stats.spec_switch_offs == 0 and stats.spec_paused_steps == 0
        assert stats.accepted_tokens == stats.drafted_tokens
    else:
        assert stats.accepted_tokens == 0
        # it measures both modes over stints of steps (a few dozen steps), then pauses
        # for the rest but its probes: most of the 150 steps
        assert stats.spec_switch_offs >= 1 and stats.spec_paused_steps > 75


def test_perfect_draft_model_gives_k_plus_one_tokens_per_verify(model_dir):
    """The target as its own draft model proposes exactly the target's greedy tokens."""
    model, k = model_dir("llama"), 3
    prompts = random_prompts((6, 19), seed=2)
    params = SamplingParams(max_new_tokens=1 + 5 * (k + 1), temperature=0, ignore_eos=True)
    base, _ = run(model, prompts, params, page_size=8)
    with Engine(str(model), **ENGINE_DEFAULTS, page_size=8, speculative_algorithm="draft",
                speculative_draft_model=str(model), speculative_num_draft_tokens=k,
                speculative_auto_off=False) as engine:
        res = engine.generate(prompts, params)
        stats = engine.stats()
    assert [[(c.token_ids, c.finish_reason) for c in r.outputs] for r in res] == base
    assert stats.verify_steps == 2 * 5
    assert stats.accepted_tokens == stats.drafted_tokens == 2 * 5 * k
    assert stats.mean_acceptance_length == k + 1 and stats.acceptance_rate == 1.0


def test_sampling_with_speculation(model_dir):
    """temperature > 0: 'exact' acceptance reproduces the run without speculation seed for
    seed; 'rejection' runs (its distribution is tested in tests/unit) and keeps drafts."""
    model = model_dir("llama")
    prompts = [[7, 8, 9, 10] * 4, random_prompts((12,), seed=3)[0]]
    params = SamplingParams(max_new_tokens=20, temperature=0.7, top_k=20, seed=4,
                            ignore_eos=True, repetition_penalty=1.1)
    base, _ = run(model, prompts, params, page_size=8)
    got, c = run(model, prompts, params, page_size=8, speculative_algorithm="ngram",
                 speculative_acceptance="exact")
    assert got == base and c.verify_steps > 0
    got, c = run(model, prompts, params, page_size=8, speculative_algorithm="ngram",
                 speculative_acceptance="rejection")
    assert [len(o[0][0]) for o in got] == [20, 20] and c.verify_steps > 0


def test_options_are_checked(model_dir):
    model = str(model_dir("llama"))
    for bad in (dict(speculative_algorithm="eagle"),
                dict(speculative_algorithm="draft"),
                dict(speculative_algorithm="ngram", speculative_num_draft_tokens=0),
                dict(speculative_algorithm="ngram", speculative_draft_model=model),
                dict(speculative_algorithm="ngram", speculative_acceptance="maybe")):
        with pytest.raises(InvalidRequestError):
            Engine(model, **ENGINE_DEFAULTS, **bad)


def test_platform_without_verify_is_a_start_up_error(model_dir, monkeypatch):
    """Attention features come from the platform's attention backend (plugin API 2.0): a
    backend without ``verify`` makes speculation a start-up error naming the capability."""
    from anyware.kernels.reference import ReferenceAttentionBackend

    monkeypatch.setattr(ReferenceAttentionBackend, "features", dataclasses.replace(
        ReferenceAttentionBackend.features, verify=False))
    with pytest.raises(CapabilityError, match="verify"):
        Engine(str(model_dir("llama")), **ENGINE_DEFAULTS, speculative_algorithm="ngram")
