"""`Eagle3TreeDrafter`: an EAGLE-3 head that drafts token trees (``--speculative-eagle-topk K``).

The catch-up is the chain drafter's (:class:`~anyware.spec.eagle3.Eagle3Drafter`): its last
logits, at position ``L - 2``, score the children of the root. Then, level by level, batched
over the requests:

* the level's nodes are the ``K`` best children of the previous level's nodes by cumulative
  log-probability (the sum of the head's log-softmax along the path; each parent offers its
  top ``K``), capped by the request's remaining node budget (``max_tokens`` nodes in all);
  within a level nodes are sorted best first, so a node's first child is its best;
* each new node's feature is its parent's output hidden state (the root's: the catch-up's
  last row), scattered to the node's slot; node ``i`` (in node order) uses the slot of
  position ``L - 1 + i``, the same slot the target's verify later gives it;
* a head forward over **all** nodes so far (a VERIFY batch on the head's worker: prefix
  ``L - 1``, node ``i`` at position ``L - 2 + depth``, ``SpecInfo.tree_mask`` letting each
  node see its ancestors) gives the logits of the newest level. Earlier levels are fed again
  with the same inputs: the contract's tree mask covers the new tokens of a step only (the
  cached prefix is always visible), so a node cannot see its ancestors' cached KV without
  seeing its cousins'.

One host read per level (the chosen parents and tokens). After the step the head's KV is
valid up to ``L - 1`` only, as for chains: positions fed with the head's own features are
recomputed from the target's features once the target has verified them (the engine moves
the target's features of an accepted path with its KV). The target verifies every node, so a
poor tree costs only acceptance.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from anyware.executor.worker import ModelWorker
from anyware.plugin import ForwardMode, SpecInfo
from anyware.request import DraftTree, Request
from anyware.scheduler.kv_manager import KVManager
from anyware.spec.drafter import DraftItem
from anyware.spec.eagle3 import Eagle3Drafter


class _Tree:
    __slots__ = ("budget", "depths", "frontier", "parents", "req", "scores", "tokens")

    def __init__(self, req: Request, budget: int) -> None:
        self.req, self.budget = req, budget
        self.tokens: list[int] = []
        self.parents: list[int] = []
        self.depths: list[int] = []
        self.scores: list[float] = []
        self.frontier: list[int] = []  # node indices of the newest level

    def add_level(self, picks: list[tuple[float, int, int]]) -> None:
        """``(score, parent node or -1, token)``, best first; distinct (parent, token)."""
        seen = set(zip(self.parents, self.tokens))
        self.frontier = []
        for score, parent, tok in picks:
            if len(self.tokens) >= self.budget or (parent, tok) in seen:
                continue
            seen.add((parent, tok))
            self.frontier.append(len(self.tokens))
            self.tokens.append(tok)
            self.parents.append(parent)
            self.depths.append(1 if parent < 0 else self.depths[parent] + 1)
            self.scores.append(score)

    def mask(self) -> list[list[bool]]:
        """Node ``a`` sees node ``b`` iff ``b`` is ``a`` or an ancestor."""
        full = DraftTree(tuple(range(len(self.tokens))), tuple(self.parents)).mask()
        return [row[1:] for row in full[1:]]


class Eagle3TreeDrafter(Eagle3Drafter):
    name = "eagle3"

    def __init__(self, worker: ModelWorker, kv: KVManager, max_prefill_tokens: int,
                 features: torch.Tensor, topk: int) -> None:
        super().__init__(worker, kv, max_prefill_tokens, features)
        if topk < 1:
            raise ValueError(f"speculative_eagle_topk must be >= 1, got {topk}")
        self.topk = topk
        self._trees: dict[int, DraftTree] = {}

    def _scatter_rows(self, slots: list[int], rows: list[int]) -> None:
        """``head.hidden_out[rows[i]]`` becomes the feature at ``slots[i]``."""
        if not slots:
            return
        idx = torch.tensor(slots + rows, dtype=torch.int64).to(self.worker.device,
                                                              non_blocking=True)
        s, r = idx.split([len(slots), len(rows)])
        self.features.index_copy_(0, s, self.head.hidden_out.index_select(0, r))

    def _pick(self, logits: torch.Tensor, groups: list[tuple[_Tree, list[int]]]) -> None:
        """Add a level to each tree of ``groups`` from ``logits`` (one row per parent node
        listed, in order; parent ``-1`` is the root) and scatter the new nodes' features."""
        k = min(self.topk, logits.shape[-1])
        logp, idx = torch.log_softmax(logits.float(), dim=-1).topk(k, dim=-1)
        tokens = self.head.hot_ids[idx]
        logp_h, tok_h = logp.tolist(), tokens.tolist()  # the level's one host read
        row, slots, rows = 0, [], []
        for tree, parents in groups:
            cands = []
            for parent in parents:
                base = tree.scores[parent] if parent >= 0 else 0.0
                cands += [(base + lp, parent, t, row) for lp, t in zip(logp_h[row], tok_h[row])]
                row += 1
            cands.sort(key=lambda c: -c[0])
            room = min(self.topk, tree.budget - len(tree.tokens))
            chosen = cands[:room]
            src = {(p, t): r for _, p, t, r in chosen}
            start = len(tree.tokens)
            tree.add_level([(s, p, t) for s, p, t, _ in chosen])
            for node in range(start, len(tree.tokens)):
                slots.append(self._slot(tree.req, tree.req.seq_len - 1 + node))
                rows.append(src[(tree.parents[node], tree.tokens[node])])
        self._scatter_rows(slots, rows)

    @torch.inference_mode()
    def prepare(self, items: Sequence[DraftItem]) -> None:
        self._ready.clear()
        self._trees.clear()
        work = self._work(items)
        if not work:
            return
        trees = [_Tree(req, m) for req, _, m in work]

        def roots(done: list[int], reqs: list[Request], logits: torch.Tensor) -> None:
            self._pick(logits, [(trees[i], [-1]) for i in done])

        self._catch_up(work, roots)
        live = [t for t in trees if t.frontier and len(t.tokens) < t.budget]
        while live:
            n_max = max(len(t.tokens) for t in live)
            reqs = [t.req for t in live]
            batch = self._batch(
                ForwardMode.VERIFY, reqs, [r.seq_len - 1 for r in reqs],
                [len(t.tokens) for t in live], [tok for t in live for tok in t.tokens],
                [len(t.frontier) for t in live])
            mask = torch.zeros((len(live), n_max, n_max), dtype=torch.bool)
            positions = []
            for i, t in enumerate(live):
                n = len(t.tokens)
                mask[i, :n, :n] = torch.tensor(t.mask(), dtype=torch.bool)
                positions += [t.req.seq_len - 2 + d for d in t.depths]
            batch.spec = SpecInfo(n_max - 1, mask.to(self.worker.device, non_blocking=True))
            batch.positions = torch.tensor(positions, dtype=torch.int64).to(
                self.worker.device, non_blocking=True)
            logits = self.worker.run(batch)
            self._pick(logits, [(t, list(t.frontier)) for t in live])
            live = [t for t in live if t.frontier and len(t.tokens) < t.budget]
        for tree in trees:
            st = self._state[tree.req]
            st.valid, st.fed = tree.req.seq_len - 1, []
            if tree.tokens:
                self._trees[id(tree.req)] = DraftTree(tuple(tree.tokens), tuple(tree.parents))

    def propose(self, request: Request, max_tokens: int) -> DraftTree | list[int]:
        tree = self._trees.pop(id(request), None)
        return [] if tree is None else tree.truncated(max_tokens)

    def release(self, request: Request) -> None:
        super().release(request)
        self._trees.pop(id(request), None)

    def close(self) -> None:
        super().close()
        self._trees.clear()
