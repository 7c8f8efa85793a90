"""Tree drafts, piece by piece: the `DraftTree` type, the trie builder, the n-gram tree
drafter, greedy tree acceptance on the device, where the accepted path's KV goes, and the
layout-generic KV move."""

import pytest
import torch
from anyware.executor.tree import tree_inputs
from anyware.memory import move_kv
from anyware.plugin import KVLayout
from anyware.request import DraftTree, InvalidDraftTreeError, Request, SamplingParams
from anyware.sampling.tree_verify import accept_tree
from anyware.scheduler.tree_moves import path_moves
from anyware.spec import NgramTreeDrafter, build_trie

#        root
#       /    \
#     5(0)   6(1)
#     /  \      \
#   7(2) 8(3)   9(4)
#          \
#          3(5)
TREE = DraftTree((5, 6, 7, 8, 9, 3), (-1, -1, 0, 0, 1, 3))


def test_draft_tree_shape():
    assert TREE.depths() == [1, 1, 2, 2, 2, 3]
    assert TREE.chain() == [5, 7] and not TREE.is_chain
    assert TREE.path([5, 8, 3]) == [0, 3, 5] and TREE.path([6, 9]) == [1, 4]
    assert TREE.path([]) == []
    with pytest.raises(ValueError):
        TREE.path([6, 7])
    mask = TREE.mask()
    assert mask[6] == [True, True, False, False, True, False, True]  # node 5: root, 0, 3, 5
    assert mask[2] == [True, False, True, False, False, False, False]  # node 1: root, 1
    assert TREE.truncated(3) == DraftTree((5, 6, 7), (-1, -1, 0))
    chain = DraftTree.from_chain([4, 4, 4])
    assert chain.is_chain and chain.chain() == [4, 4, 4]


def test_malformed_trees_are_named():
    with pytest.raises(InvalidDraftTreeError, match="parent 1"):
        DraftTree((1, 2), (-1, 1))  # a node its own parent
    with pytest.raises(InvalidDraftTreeError, match="siblings"):
        DraftTree((1, 1), (-1, -1))
    with pytest.raises(InvalidDraftTreeError, match="one parent per token"):
        DraftTree((1, 2), (-1,))


def test_trie_merges_shared_prefixes_and_keeps_the_heaviest_branches():
    conts = [[1, 2, 3], [1, 2, 4], [1, 5, 6], [7, 8, 9]]
    tree = build_trie(conts, max_nodes=100)
    # 1 (weight 3) first, then 2 (2); among the nodes of weight 1 the shallowest, then the
    # continuation given first
    assert tree.tokens == (1, 2, 7, 5, 8, 3, 4, 6, 9)
    assert tree.parents == (-1, 0, -1, 0, 2, 1, 1, 3, 4)
    assert tree.chain() == [1, 2, 3]
    assert build_trie(conts, max_nodes=4) == DraftTree((1, 2, 7, 5), (-1, 0, -1, 0))
    assert build_trie(conts, max_nodes=2) == DraftTree((1, 2), (-1, 0))
    # weights decide: the last continuation outweighs the other three
    assert build_trie(conts, 3, weights=[1, 1, 1, 10]).chain() == [7, 8, 9]
    assert build_trie([[1, 2], [1, 2]], 5) == DraftTree((1, 2), (-1, 0))


def _request(tokens):
    return Request("r", list(tokens), SamplingParams(max_new_tokens=8, temperature=0), 0,
                   lambda d: None)


def test_ngram_tree_drafter_branches_on_different_continuations():
    # "1 2" is followed by 3 twice and by 4 once; the request ends in "1 2"
    req = _request([1, 2, 3, 9, 1, 2, 4, 8, 1, 2, 3, 7, 1, 2])
    drafter = NgramTreeDrafter(min_n=1, max_n=2)
    tree = drafter.propose(req, 8)
    assert isinstance(tree, DraftTree) and len(tree) == 8
    # the more frequent first token, then the most recent match's continuation
    assert tree.chain()[:3] == [3, 7, 1]
    assert tree.tokens[:5] == (3, 4, 7, 8, 9)  # equal weights: the shallowest first
    assert 4 in [t for t, p in zip(tree.tokens, tree.parents) if p == -1]  # the other branch
    assert [n for n, _ in drafter.matches(req)][:3] == [2, 2, 2]
    # one match: a chain (which the scheduler verifies as a chain)
    single = drafter.propose(_request([5, 6, 7, 8, 5, 6]), 3)
    assert single.is_chain and single.chain() == [7, 8, 5]
    assert drafter.propose(_request([1, 2, 3]), 3) == []
    drafter.release(req)


def test_tree_acceptance_takes_the_target_path_and_orders_it_first():
    # rows: a chain request of 3 rows at 0..2, then TREE's 7 rows at 3..9
    # the target says: after root 6, after node 1 (6) 9, after node 4 (9) 2 -> path 1, 4
    target = torch.tensor([11, 12, 13, 6, 0, 9, 0, 0, 2, 0])
    counts, order = accept_tree(target, [3], [TREE])
    assert counts.tolist() == [3]
    assert order.tolist()[:3] == [0, 1, 2]  # other rows stay
    assert order.tolist()[3:6] == [3, 5, 8]  # root, node 1, node 4
    assert sorted(order.tolist()) == list(range(10))
    assert target[order].tolist()[3:6] == [6, 9, 2]  # the drafts 6, 9 and the bonus 2
    # the deepest path through node 3: 5, 8, 3 then bonus 1
    target = torch.tensor([5, 8, 0, 0, 3, 0, 1])
    counts, order = accept_tree(target, [0], [TREE])
    assert counts.tolist() == [4] and target[order].tolist()[:4] == [5, 8, 3, 1]
    # nothing agrees: only the root's token
    counts, order = accept_tree(torch.tensor([4, 0, 0, 0, 0, 0, 0]), [0], [TREE])
    assert counts.tolist() == [1] and order.tolist()[0] == 0


def test_tree_inputs_positions_and_mask():
    pos, mask = tree_inputs([list(TREE.parents), []], [10, 20], [7, 2], 7, torch.device("cpu"))
    assert pos.tolist() == [10, 11, 11, 12, 12, 12, 13, 20, 21]
    assert mask[0].tolist() == TREE.mask()
    assert mask[1].tolist() == torch.ones(7, 7, dtype=torch.bool).tril().tolist()


def test_path_moves_map_accepted_nodes_to_consecutive_slots():
    req = _request(range(20))
    req.pages = [3, 7, 2, 9]  # page size 4
    # pre = 5: node i at position 6 + i; path 1, 4 -> positions 7, 10 move to 6, 7
    moves = path_moves(req, 5, TREE, [6, 9], 4)
    slot = lambda pos: req.pages[pos // 4] * 4 + pos % 4  # noqa: E731
    assert moves == [(slot(7), slot(6)), (slot(10), slot(7))]
    assert path_moves(req, 5, TREE, [5, 7], 4) == [(slot(8), slot(7))]  # node 2 to depth 2
    assert path_moves(req, 5, TREE, [5], 4) == []  # node 0 is in place


class _Alloc:
    def allocate(self, shape, dtype):
        return torch.zeros(shape, dtype=dtype)


@pytest.mark.parametrize("kind", ["nhd", "head_major", "interleaved"])
def test_move_kv_in_every_layout(kind):
    layout = KVLayout(4, 2, 8, 8, torch.float32, head_major=kind == "head_major",
                      interleaved=kind == "interleaved")
    cache = layout.allocate(_Alloc(), 2, 6)
    slots = torch.arange(24)
    for t in (*cache.k, *cache.v):  # distinct contents per slot and tensor
        t[layout.slot_index(slots)] = torch.randn(24, 2, 8)
    before = [t[layout.slot_index(slots)].clone() for t in (*cache.k, *cache.v)]
    src, dst = torch.tensor([9, 13, 6]), torch.tensor([5, 9, 21])  # 9 is read, then written
    move_kv(cache, src, dst)
    for t, old in zip((*cache.k, *cache.v), before):
        now = t[layout.slot_index(slots)]
        want = old.clone()
        want[dst] = old[src]
        assert torch.equal(now, want)
