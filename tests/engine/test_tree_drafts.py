"""Tree drafts through the engine: greedy output with n-gram trie drafts, and with a drafter
whose right continuation is never the first branch (every accepted path moves KV), is
token-identical to no speculation across page sizes, chunked prefill, mixed and unmixed
batches, the radix cache and retraction; the KV of an accepted path equals what plain
decoding writes; sampling requests verify chains; a backend without ``tree_mask`` refuses
tree drafts at start-up."""

import dataclasses

import pytest
import torch
from anyware import Engine, SamplingParams
from anyware.plugin import CapabilityError
from anyware.request import DraftTree, InvalidRequestError
from anyware.spec import Drafter

from tests.engine.conftest import ENGINE_DEFAULTS
from tests.engine.test_spec_graphs import fake_graphs  # noqa: F401 (a fixture)
from tests.engine.test_speculative import PARAMS, prompts_with_repeats
from tests.engine.tiny_models import random_prompts

TREE = dict(speculative_algorithm="ngram", speculative_ngram_tree=True,
            speculative_num_draft_tokens=6, speculative_auto_off=False)


def branchy_prompts():
    """Repetitive text whose n-grams have several continuations (so tries branch)."""
    return [[7, 8, 9, 7, 8, 3, 7, 8, 9, 7, 8, 5] * 2, [1, 2, 3, 1, 2, 4, 1, 2, 3] * 3,
            *prompts_with_repeats()]


class Census:
    """Counts the scheduled batches that verify trees and the KV moves of accepted paths."""

    def __init__(self):
        self.tree_batches = self.moves = 0

    def install(self, core):
        schedule, take = core.scheduler.schedule, core.scheduler.take_kv_moves

        def counted():
            batch = schedule()
            if batch is not None:
                self.tree_batches += batch.has_tree
            return batch

        def taken():
            moves = take()
            self.moves += len(moves)
            return moves
        core.scheduler.schedule, core.scheduler.take_kv_moves = counted, taken


def run(model, prompts, params, drafter=None, waves=1, census=None, **kw):
    with Engine(str(model), **ENGINE_DEFAULTS, **kw) as engine:
        def install(core):
            if drafter is not None:
                core.speculator.drafter = drafter
            if census is not None:
                census.install(core)
        engine._loop.call(install)
        res = []
        if waves == 2:
            res = engine.generate(prompts[:3], params[:3])
        res += engine.generate(prompts, params)
        engine.check_invariants()
        counters = engine._loop.call(lambda core: dataclasses.replace(core.scheduler.counters))
    return [[(c.token_ids, c.finish_reason) for c in r.outputs] for r in res], counters


class SecondBranch(Drafter):
    """Knows each request's greedy continuation and drafts a tree whose first branch at every
    level is wrong: root -> wrong, right; right -> wrong, right; ... The accepted path is the
    second child all the way down, so every accepted node moves in the KV cache."""

    def __init__(self, known):
        self.known = known

    def propose(self, request, max_tokens):
        cont = self.known[tuple(request.prompt_ids)][len(request.output_ids):]
        tokens, parents, right = [], [], -1
        for tok in cont:
            if len(tokens) + 2 > max_tokens:
                break
            tokens += [(tok + 1) % 300, tok]
            parents += [right, right]
            right = len(tokens) - 1
        return DraftTree(tuple(tokens), tuple(parents)) if tokens else []


PARAMS9 = [SamplingParams(max_new_tokens=n, temperature=0, ignore_eos=True)
           for n in (20, 25)] + PARAMS

SETTINGS = [
    dict(page_size=1),
    dict(page_size=16, chunked_prefill_size=8, mixed_batches=False),
    dict(page_size=16, chunked_prefill_size=16),
    dict(page_size=4, chunked_prefill_size=16, disable_radix_cache=True),
    # tight, and no output reserve at admission: requests are retracted
    dict(page_size=4, kv_cache_bytes=64 << 10, schedule_conservativeness=0),
]
IDS = ["p1", "p16-chunk8-unmixed", "p16-chunk16-mixed", "p4-nocache", "p4-retract"]


@pytest.mark.parametrize("setting", SETTINGS, ids=IDS)
def test_tree_drafts_greedy_identical_to_no_speculation(model_dir, setting):
    model, prompts = model_dir("llama"), branchy_prompts()
    base, base_c = run(model, prompts, PARAMS9, waves=2, **setting)
    # n-gram tries
    census = Census()
    got, c = run(model, prompts, PARAMS9, waves=2, census=census, **setting, **TREE)
    assert got == base
    assert census.tree_batches > 0 and c.verify_steps > 0
    # every right token on a second branch: each verify moves KV
    known = {tuple(p): out[0][0] for p, out in zip(prompts, base[3:])}
    census = Census()
    got, c = run(model, prompts, PARAMS9, SecondBranch(known), waves=2, census=census,
                 **setting, **TREE)
    assert got == base
    assert census.tree_batches > 0 and census.moves > 0 and c.accepted_tokens > 0
    if "kv_cache_bytes" in setting:
        assert c.retractions > 0 and base_c.retractions > 0
    if "disable_radix_cache" not in setting:
        assert c.cached_prompt_tokens > 0


@pytest.mark.parametrize("page_size", [1, 4])
def test_accepted_path_kv_equals_plain_decode(model_dir, page_size):
    """After generation the request's KV is in the radix cache: with tree drafts (each
    accepted path moved from the second branches) it holds what plain decoding wrote."""
    model = model_dir("llama")
    prompt = random_prompts((11,), seed=5)[0]
    params = SamplingParams(max_new_tokens=21, temperature=0, ignore_eos=True)

    def cached_kv(**kw):
        with Engine(str(model), **ENGINE_DEFAULTS, page_size=page_size, **kw) as engine:
            if "speculative_algorithm" in kw:
                engine._loop.call(lambda core: setattr(core.speculator, "drafter", drafter))
            out = engine.generate([prompt], params)[0].outputs[0].token_ids

            def read(core):
                m = core.kv.cache.match_prefix(prompt + out)
                slots = torch.tensor([p * page_size + o for p in m.pages
                                      for o in range(page_size)])
                pool = core.worker.pool.cache
                idx = pool.layout.slot_index(slots)
                k = torch.stack([t[idx] for t in pool.k])
                v = torch.stack([t[idx] for t in pool.v])
                return m.num_tokens, k, v
            stats = engine.stats()
            return out, engine._loop.call(read), stats

    drafter = None
    out, (n, k, v), _ = cached_kv()
    drafter = SecondBranch({tuple(prompt): out})
    got, (n2, k2, v2), stats = cached_kv(**TREE)
    assert got == out and stats.accepted_tokens >= 2 * stats.verify_steps > 0
    m = min(n, n2)
    assert m >= len(prompt) + len(out) - page_size - 1
    torch.testing.assert_close(k2[:, :m], k[:, :m], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(v2[:, :m], v[:, :m], rtol=1e-4, atol=1e-5)


def test_sampling_requests_verify_chains(model_dir):
    """temperature > 0 with tree drafts: the requests verify the tries' best chains ('exact'
    acceptance: identical to no speculation seed for seed); greedy ones beside them trees."""
    model = model_dir("llama")
    prompts = branchy_prompts()[:2]
    params = [SamplingParams(max_new_tokens=20, temperature=0.7, top_k=20, seed=4,
                             ignore_eos=True, repetition_penalty=1.1),
              SamplingParams(max_new_tokens=20, temperature=0, ignore_eos=True,
                             repetition_penalty=1.1)]
    base, _ = run(model, prompts, params, page_size=8)
    census = Census()
    got, c = run(model, prompts, params, page_size=8, census=census, **TREE)
    assert got == base and c.verify_steps > 0


def test_tree_option_checked(model_dir):
    model = str(model_dir("llama"))
    for bad in (dict(speculative_ngram_tree=True),
                dict(speculative_algorithm="draft", speculative_draft_model=model,
                     speculative_ngram_tree=True)):
        with pytest.raises(InvalidRequestError, match="ngram"):
            Engine(model, **ENGINE_DEFAULTS, **bad)


def test_backend_without_tree_mask_refuses_tree_drafts(model_dir, monkeypatch):
    from anyware.kernels.reference import ReferenceAttentionBackend

    monkeypatch.setattr(ReferenceAttentionBackend, "features", dataclasses.replace(
        ReferenceAttentionBackend.features, tree_mask=False))
    with pytest.raises(CapabilityError, match="tree_mask"):
        Engine(str(model_dir("llama")), **ENGINE_DEFAULTS, **TREE)
    # chains need no tree mask
    with Engine(str(model_dir("llama")), **ENGINE_DEFAULTS, speculative_algorithm="ngram"):
        pass


def test_tree_drafts_under_graphs(model_dir, fake_graphs):  # noqa: F811 (the fixture)
    """With the graph strategy (the fake device module of test_spec_graphs): tree verifies
    run eagerly, chain verifies and decodes replay; greedy output equals the eager run
    without speculation."""
    model, prompts = model_dir("llama"), branchy_prompts()[:4]
    params = [SamplingParams(max_new_tokens=20, temperature=0, ignore_eos=True)] * 4
    base, _ = run(model, prompts, params, page_size=4)
    census = Census()
    got, _ = run(model, prompts, params, page_size=4, census=census, execution="graphs",
                 **TREE)
    assert got == base and census.tree_batches > 0
    assert fake_graphs[0].verify_tokens == TREE["speculative_num_draft_tokens"] + 1


def test_sliding_window_model_refuses_tree_drafts(tmp_path):
    """A verify row's window bound is placed at prefix + row, a tree node at prefix + depth:
    tree drafts on a sliding-window model are refused at start-up, chains run."""
    from tests.engine.tiny_models import build_model

    model = build_model("qwen2", tmp_path / "swa", use_sliding_window=True, sliding_window=16,
                        max_window_layers=0)
    with pytest.raises(ValueError, match="sliding-window"):
        Engine(str(model), **ENGINE_DEFAULTS, **TREE)


def test_logprobs_follow_the_accepted_path(model_dir):
    """Logprobs of tokens kept from a tree verify (rows reordered on the device) are those of
    the tokens at the accepted nodes: equal to the run without speculation."""
    model = model_dir("llama")
    prompts = random_prompts((6, 11), seed=9)
    params = SamplingParams(max_new_tokens=14, temperature=0, ignore_eos=True, logprobs=2)

    def generate(drafter=None, **kw):
        with Engine(str(model), **ENGINE_DEFAULTS, page_size=4, **kw) as engine:
            if drafter is not None:
                engine._loop.call(lambda core: setattr(core.speculator, "drafter", drafter))
            return [r.outputs[0] for r in engine.generate(prompts, params)]

    base = generate()
    known = {tuple(p): o.token_ids for p, o in zip(prompts, base)}
    got = generate(SecondBranch(known), **TREE)
    for b, g in zip(base, got):
        assert g.token_ids == b.token_ids
        for lb, lg in zip(b.logprobs, g.logprobs, strict=True):
            assert lg.token_id == lb.token_id
            assert lg.logprob == pytest.approx(lb.logprob, abs=1e-4)
            assert [t for t, _ in lg.top] == [t for t, _ in lb.top]


def test_penalties_count_each_nodes_own_path(model_dir):
    """A greedy request with penalties: each tree node's logits are penalised over the output
    plus the drafts on its own root path (not its cousins'), as a plain decode would be."""
    model = model_dir("llama")
    prompts = [[7, 8, 9, 7, 8, 3] * 3, *random_prompts((10,), seed=12)]
    params = SamplingParams(max_new_tokens=20, temperature=0, ignore_eos=True,
                            repetition_penalty=1.5, frequency_penalty=0.5)
    base, _ = run(model, prompts, [params] * 2, page_size=4)
    known = {tuple(p): out[0][0] for p, out in zip(prompts, base)}
    census = Census()
    got, c = run(model, prompts, [params] * 2, SecondBranch(known), census=census,
                 page_size=4, **TREE)
    assert got == base and census.moves > 0 and c.accepted_tokens > 0
