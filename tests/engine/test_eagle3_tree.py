"""EAGLE-3 tree drafts (``--speculative-eagle-topk K``): greedy output identical to no
speculation across page sizes, chunked prefill, unmixed batches, retraction and the radix
cache; every tree the head proposes equals a plain-torch beam over the head's log-softmax
(top K children per node, the K best per level by cumulative log-probability, at most k
nodes); a head that predicts the target's next-but-one token has its best root child
accepted in every verify; sampling requests verify chains."""

import pytest
import torch
from anyware import Engine, SamplingParams
from anyware.request import InvalidRequestError

from tests.engine.conftest import ENGINE_DEFAULTS
from tests.engine.eagle3_heads import cycle_pair, random_head
from tests.engine.test_eagle3 import reference_head
from tests.engine.test_spec_graphs import fake_graphs  # noqa: F401 (a fixture)
from tests.engine.test_speculative import PARAMS, prompts_with_repeats, run
from tests.engine.tiny_models import random_prompts


@pytest.fixture(scope="module")
def heads(model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("eagle3tree")
    return {"random": random_head(root / "random"),
            "cycle": cycle_pair(root / "cycle", model_dir("llama"))}


def tree_spec(head, k=5, topk=2):
    return dict(speculative_algorithm="eagle3", speculative_draft_model=str(head),
                speculative_num_draft_tokens=k, speculative_eagle_topk=topk)


@pytest.mark.parametrize("setting", [
    dict(page_size=4),
    dict(page_size=16, chunked_prefill_size=8, mixed_batches=False),
    # tight, and no output reserve at admission: requests are retracted
    dict(page_size=4, kv_cache_bytes=64 << 10, schedule_conservativeness=0),
], ids=["p4", "p16-chunk8-unmixed", "p4-retract"])
def test_greedy_output_identical_to_no_speculation(model_dir, heads, setting):
    model = model_dir("llama")
    prompts = prompts_with_repeats()
    base, base_c = run(model, prompts, PARAMS, waves=2, **setting)
    got, c = run(model, prompts, PARAMS, waves=2, **setting, **tree_spec(heads["random"]))
    assert got == base
    assert c.verify_steps > 0 and c.drafted_tokens > c.verify_steps
    if "kv_cache_bytes" in setting:
        assert c.retractions > 0 and base_c.retractions > 0


def _reference_tree(target, head, tokens, k, topk):
    """The beam of ``Eagle3TreeDrafter`` in plain torch: ``(tokens, parents)``."""
    logits_after, hot = reference_head(target, head, tokens)
    toks, parents, scores, paths = [], [], [], []
    frontier = [-1]
    while frontier and len(toks) < k:
        cands = []
        for parent in frontier:
            lp = torch.log_softmax(logits_after(paths[parent] if parent >= 0 else []), -1)
            values, ids = lp.topk(topk)
            base = scores[parent] if parent >= 0 else 0.0
            cands += [(base + float(v), parent, int(hot[i])) for v, i in zip(values, ids)]
        cands.sort(key=lambda c: -c[0])
        frontier = []
        for score, parent, tok in cands[: min(topk, k - len(toks))]:
            frontier.append(len(toks))
            toks.append(tok)
            parents.append(parent)
            scores.append(score)
            paths.append((paths[parent] if parent >= 0 else []) + [tok])
    return tuple(toks), tuple(parents)


def test_trees_match_a_plain_torch_beam(model_dir, heads):
    """Every tree equals the beam computed from a plain-torch head over the request's tokens
    (transformers' hidden states of the target as features): the node positions, features,
    tree mask and slots of the head's level forwards are right."""
    model, head, k, topk = model_dir("llama"), heads["random"], 5, 2
    seen = []
    with Engine(str(model), **ENGINE_DEFAULTS, page_size=4, chunked_prefill_size=8,
                **tree_spec(head, k, topk)) as engine:
        def record(core):
            drafter = core.speculator.drafter
            propose = drafter.propose

            def recorded(request, max_tokens):
                out = propose(request, max_tokens)
                if out and max_tokens == k:
                    seen.append((request.tokens(0, request.seq_len), out))
                return out
            drafter.propose = recorded
        engine._loop.call(record)
        engine.generate(random_prompts((6, 13), seed=8),
                        SamplingParams(max_new_tokens=9, temperature=0, ignore_eos=True))
    assert len(seen) >= 4
    for tokens, tree in seen[:6]:
        assert not tree.is_chain
        assert (tree.tokens, tree.parents) == _reference_tree(model, head, tokens, k, topk)


def test_head_that_predicts_the_target_has_its_best_root_child_accepted(heads):
    """The cycle head's top root child is always the target's next token, and its deeper
    nodes (fed its own hidden state) are wrong: exactly one accepted node per verify, and the
    target's features reach the head at the right positions after each accepted path."""
    target, head = heads["cycle"]
    prompts = random_prompts((5, 17, 9), seed=5)
    params = SamplingParams(max_new_tokens=22, temperature=0, ignore_eos=True)
    base, _ = run(target, prompts, params, page_size=4)
    got, c = run(target, prompts, params, page_size=4, **tree_spec(head, 4, 2),
                 speculative_auto_off=False)
    assert got == base
    assert c.verify_steps > 0 and c.accepted_tokens == c.verify_steps


def test_sampling_verifies_chains_seed_for_seed(heads):
    target, head = heads["cycle"]
    prompts = random_prompts((7, 12), seed=6)
    params = SamplingParams(max_new_tokens=16, temperature=0.2, seed=3, n=2, ignore_eos=True)
    base, _ = run(target, prompts, params, page_size=4)
    got, c = run(target, prompts, params, page_size=4, **tree_spec(head, 4, 2),
                 speculative_auto_off=False)
    assert got == base and c.verify_steps > 0 and c.accepted_tokens > 0


def test_topk_option_checked(model_dir, heads):
    model = str(model_dir("llama"))
    for bad in (dict(speculative_eagle_topk=2),
                dict(speculative_algorithm="ngram", speculative_eagle_topk=2),
                {**tree_spec(heads["random"]), "speculative_eagle_topk": 0}):
        with pytest.raises(InvalidRequestError, match="eagle_topk"):
            Engine(model, **ENGINE_DEFAULTS, **bad)


def test_accepted_paths_move_the_heads_features(model_dir, heads):
    """The target verifies trees whose right continuation is always a second branch (so
    every accepted node moves), while the head keeps drafting from the target's features:
    the head's trees still equal the plain-torch beam over the request's tokens, so the
    target's features of each accepted path moved with its KV."""
    from tests.engine.test_tree_drafts import Census, SecondBranch

    model, head, k, topk = model_dir("llama"), heads["random"], 4, 2
    prompts = random_prompts((6, 13), seed=8)
    params = SamplingParams(max_new_tokens=12, temperature=0, ignore_eos=True)
    base, _ = run(model, prompts, params, page_size=4)
    oracle = SecondBranch({tuple(p): out[0][0] for p, out in zip(prompts, base)})
    seen, census = [], Census()
    with Engine(str(model), **ENGINE_DEFAULTS, page_size=4, **tree_spec(head, k, topk),
                speculative_auto_off=False) as engine:
        def install(core):
            drafter = core.speculator.drafter
            propose = drafter.propose

            def swapped(request, max_tokens):
                real = propose(request, max_tokens)
                if real and max_tokens == k and request.output_ids:
                    seen.append((request.tokens(0, request.seq_len), real))
                return oracle.propose(request, max_tokens)
            drafter.propose = swapped
            census.install(core)
        engine._loop.call(install)
        res = engine.generate(prompts, params)
    assert [[(c.token_ids, c.finish_reason) for c in r.outputs] for r in res] == base
    assert census.moves > 0 and len(seen) >= 3
    for tokens, tree in seen[:4]:
        assert (tree.tokens, tree.parents) == _reference_tree(model, head, tokens, k, topk)


def test_eagle3_trees_under_graphs(model_dir, heads, fake_graphs):  # noqa: F811 (the fixture)
    """With the graph strategy (the fake device module of test_spec_graphs): the head's tree
    levels and the target's tree verifies run eagerly, the rest replays; greedy output equals
    the eager run without speculation."""
    model = model_dir("llama")
    prompts = random_prompts((9, 23, 5), seed=4)
    params = SamplingParams(max_new_tokens=16, temperature=0, ignore_eos=True)
    base, _ = run(model, prompts, params, page_size=4)
    got, c = run(model, prompts, params, page_size=4, execution="graphs",
                 **tree_spec(heads["random"]))
    assert got == base and c.verify_steps > 0 and len(fake_graphs) == 2
