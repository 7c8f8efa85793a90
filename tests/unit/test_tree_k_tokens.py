"""Tree drafts through the scheduler, the KV manager and the radix cache, driven by the fake
device of ``test_k_tokens`` extended to trees: random draft trees whose right continuation
sits on a random branch; after each processed step the device applies the scheduler's KV
copies (``take_kv_moves``, as the engine does) and it checks, every step, that every position a request attends to holds that request's real
token — so an accepted path's KV must have been moved to consecutive positions, rejected
nodes' KV never read, cached or shared. Outputs equal a one-token-per-step run."""

from anyware.request import DraftTree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit import test_k_tokens as kt


class TreeDevice(kt.FakeDevice):
    def drafts(self, req, n):
        """A random tree of up to ``n`` nodes; each node right (the truth after its path)
        with probability ``accept``, else a random wrong token; siblings distinct."""
        seq = [self.resolve(t) for t in req.all_ids]
        tokens, parents, paths = [], [], []
        for _ in range(self.rng.randint(0, n)):
            par = self.rng.randint(-1, len(tokens) - 1)
            path = paths[par] if par >= 0 else []
            right = kt.truth(seq + path)
            tok = right if self.rng.random() < self.accept else self.rng.randrange(2, kt.VOCAB)
            if any(p == par and t == tok for t, p in zip(tokens, parents)):
                continue
            tokens.append(tok)
            parents.append(par)
            paths.append([*path, tok])
        return DraftTree(tuple(tokens), tuple(parents)) if tokens else []

    def move(self, moves):
        """The engine's KV copies after a processed step: one gather, then one scatter."""
        values = [self.kv.get(src) for src, _ in moves]
        for (_, dst), v in zip(moves, values):
            self.kv[dst] = v
        self.moved += len(moves)

    def launch(self, batch):
        chains = [i for i, t in enumerate(batch.trees) if t is None]
        results = iter(super().launch(_only(batch, chains)) if chains else [])
        out = []
        for req, pre, samples, tree in zip(batch.reqs, batch.prefix_lens, batch.samples,
                                           batch.trees):
            if tree is None:
                if samples:
                    out.append(next(results))
                continue
            real = [self.resolve(t) for t in req.all_ids]
            for pos in range(pre):
                assert self.kv[self.slot(req, pos)] == real[pos], (req.rid, pos)
            self.kv[self.slot(req, pre)] = real[pre]
            for j, tok in enumerate(tree.tokens):
                self.kv[self.slot(req, pre + 1 + j)] = tok
            seq, cur = real[: pre + 1], -1
            toks = [kt.truth(seq)]
            while True:
                nxt = next((j for j, (t, p) in enumerate(zip(tree.tokens, tree.parents))
                            if p == cur and t == toks[-1]), None)
                if nxt is None:
                    break
                cur = nxt
                seq = [*seq, tree.tokens[nxt]]
                toks.append(kt.truth(seq))
            out.append(toks)
        return out


class _Devices:
    """The tree device of a run, and the scheduler's ``process`` followed by the device's
    KV copies (what ``EngineCore`` does after each processed step)."""

    def __init__(self, monkeypatch):
        self.last = None
        outer = self

        class Device(TreeDevice):
            def __init__(self, *a):
                super().__init__(*a)
                self.moved = 0
                outer.last = self

        monkeypatch.setattr(kt, "FakeDevice", Device)
        process = kt.Scheduler.process

        def process_and_move(sched, *a, **kw):
            process(sched, *a, **kw)
            outer.last.move(sched.take_kv_moves())
        monkeypatch.setattr(kt.Scheduler, "process", process_and_move)


def _only(batch, keep):
    """The rows ``keep`` of ``batch`` (the chain and decode rows the base device runs)."""
    import dataclasses

    pick = lambda xs: [xs[i] for i in keep]  # noqa: E731
    return dataclasses.replace(
        batch, reqs=pick(batch.reqs), extend_lens=pick(batch.extend_lens),
        prefix_lens=pick(batch.prefix_lens), samples=pick(batch.samples),
        drafts=pick(batch.drafts), prompt_lp=[], trees=[None] * len(keep), out_index=[],
        rows=[])


def run(k, num_pages, cache, overlap, chunk, seed, accept, prompts, monkeypatch):
    """``test_k_tokens.run`` with tree drafts; returns its result and the KV copies made."""
    devices = _Devices(monkeypatch)
    try:
        return (*kt.run(k, num_pages, cache, overlap, chunk, seed, accept, prompts),
                devices.last.moved)
    finally:
        monkeypatch.undo()


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(k=st.integers(2, 6), num_pages=st.integers(12, 40), cache=st.booleans(),
       overlap=st.booleans(), chunk=st.sampled_from([3, 8, 64]), seed=st.integers(0, 2**16),
       accept=st.sampled_from([0.3, 0.7, 1.0]), prompts=kt.prompt_lists)
def test_tree_drafts_match_one_token_per_step(monkeypatch, k, num_pages, cache, overlap, chunk,
                                              seed, accept, prompts):
    want, _ = kt.run(0, num_pages, cache, False, chunk, seed, accept, prompts)
    got, counters, _ = run(k, num_pages, cache, overlap, chunk, seed, accept, prompts,
                           monkeypatch)
    assert got == want
    assert counters.accepted_tokens <= counters.drafted_tokens


def test_trees_verify_and_move(monkeypatch):
    """A fixed case where trees are verified and accepted paths move (not vacuous)."""
    prompts = [([5, 6, 7], 30), ([9, 9, 4], 25)]
    want, _ = kt.run(0, 64, True, False, 64, 3, 0.7, prompts)
    got, c, moved = run(5, 64, True, True, 64, 3, 0.7, prompts, monkeypatch)
    assert got == want and c.verify_steps > 0 and c.accepted_tokens > 0 and moved > 0
