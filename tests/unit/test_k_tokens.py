"""k tokens per step: the scheduler, KV manager and radix cache driven by a fake runner whose
verify accepts 0..k drafts per request at random.

The fake "model" is a deterministic function of the token sequence. The fake device keeps the
token whose KV each slot holds, so every step checks that every position a request attends to
holds that request's real token: rejected drafts' KV must never be read, cached or shared.
Outputs must equal a one-token-per-step run; the memory invariant holds after every step.
"""

import random

import torch
from anyware.memory import PageAllocator, PageTable
from anyware.memory.radix_cache import RadixCache
from anyware.plugin import ForwardMode
from anyware.request import Request, SamplingParams
from anyware.scheduler import Scheduler, SchedulerConfig
from anyware.scheduler.kv_manager import KVManager
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

VOCAB, EOS = 50, 1


def truth(seq: list[int]) -> int:
    """The fake model's greedy next token."""
    return (seq[-1] * 7 + len(seq) * 3 + (seq[-2] if len(seq) > 1 else 0)) % VOCAB


class FakeDevice:
    """Runs scheduled batches: writes each new position's token into its KV slot, checks that
    every attended position holds the right token, and produces tokens (verify: the target's
    token at each position, accepted while it equals the draft)."""

    def __init__(self, page_size: int, seed: int, accept: float) -> None:
        self.ps = page_size
        self.kv: dict[int, int] = {}
        self.future: dict[int, int] = {}  # placeholder row -> newest token (FutureTokens)
        self.rng = random.Random(seed)
        self.accept = accept

    def resolve(self, t: int) -> int:
        return self.future[-t - 1] if t < 0 else t

    def slot(self, req: Request, pos: int) -> int:
        return req.pages[pos // self.ps] * self.ps + pos % self.ps

    def drafts(self, req: Request, n: int) -> list[int]:
        """Right for a random number of tokens, then wrong."""
        seq, out = req.all_ids, []
        good = self.rng.random() < self.accept
        for _ in range(self.rng.randint(0, n)):
            t = truth(seq + out)
            good = good and self.rng.random() < self.accept
            out.append(t if good else (t + 1) % VOCAB)
        return out

    def launch(self, batch) -> list[list[int]]:
        results = []
        for req, pre, ext, samples, drafts in zip(batch.reqs, batch.prefix_lens,
                                                  batch.extend_lens, batch.samples, batch.drafts):
            real = [self.resolve(t) for t in req.all_ids]
            inputs = real[pre:pre + 1] + drafts if drafts else real[pre:pre + ext]
            assert len(inputs) == ext
            for pos in range(pre):  # what attention reads must be this request's tokens
                assert self.kv[self.slot(req, pos)] == real[pos], (req.rid, pos)
            for j, tok in enumerate(inputs):
                self.kv[self.slot(req, pre + j)] = tok
            if not samples:
                continue
            seq = real[:pre] + inputs
            if not drafts:
                results.append([truth(seq)])
                continue
            toks = [truth(seq[: pre + 1])]
            for j, d in enumerate(drafts):
                if toks[-1] != d:
                    break
                toks.append(truth(seq[: pre + 2 + j]))
            results.append(toks)
        return results


def make(k: int, num_pages: int, cache: bool, chunk: int, device: FakeDevice | None):
    alloc = PageAllocator(num_pages)
    table = PageTable(4, 64, torch.device("cpu"))
    radix = RadixCache(4, alloc.free) if cache else None
    kv = KVManager(alloc, table, 4, radix)
    return Scheduler(SchedulerConfig(4, chunk, True, 200, num_draft_tokens=k), kv,
                     eos_token_ids=(EOS,), drafts=device.drafts if device and k else None)


def run(k, num_pages, cache, overlap, chunk, seed, accept, prompts):
    dev = FakeDevice(4, seed, accept)
    s = make(k, num_pages, cache, chunk, dev)
    reqs = [Request(f"r{i}", p, SamplingParams(max_new_tokens=m, temperature=0), 0,
                    lambda d: None) for i, (p, m) in enumerate(prompts)]
    for r in reqs:
        s.add(r)
    inflight, steps = None, 0
    while inflight is not None or s.has_work():
        batch = s.schedule()
        launched = None
        if batch is not None:
            if batch.has_verify:
                assert batch.mode in (ForwardMode.VERIFY, ForwardMode.MIXED)
            results = dev.launch(batch)
            s.commit(batch)
            rows = [r for r, smp in zip(batch.rows, batch.samples) if smp]
            for row, toks in zip(rows, results):
                dev.future[row] = toks[-1]
            launched = (batch, results)
        done, inflight = (inflight, launched) if overlap else (launched, None)
        if done is not None:
            s.process(done[0], done[1], None)
        s.kv.check()
        if s.kv.cache is not None:
            s.kv.cache.check_invariants()
        steps += 1
        assert steps < 5000
    assert s.kv.owned_pages == 0
    return [r.output_ids for r in reqs], s.counters


prompt_lists = st.lists(
    st.tuples(st.lists(st.integers(2, VOCAB - 1), min_size=1, max_size=14),
              st.integers(1, 24)),
    min_size=1, max_size=5)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(k=st.integers(1, 4), num_pages=st.integers(12, 40), cache=st.booleans(),
       overlap=st.booleans(), chunk=st.sampled_from([3, 8, 64]), seed=st.integers(0, 2**16),
       accept=st.sampled_from([0.0, 0.5, 0.9, 1.0]), prompts=prompt_lists)
def test_k_tokens_per_step_match_one_token_per_step(k, num_pages, cache, overlap, chunk, seed,
                                                    accept, prompts):
    want, _ = run(0, num_pages, cache, False, chunk, seed, accept, prompts)
    got, counters = run(k, num_pages, cache, overlap, chunk, seed, accept, prompts)
    assert got == want
    assert counters.accepted_tokens <= counters.drafted_tokens


def test_all_drafts_right_gives_k_plus_one_tokens_per_verify():
    got, c = run(3, 64, False, False, 64, 0, 1.0, [([5, 6, 7], 17)])
    want, _ = run(0, 64, False, False, 64, 0, 1.0, [([5, 6, 7], 17)])
    assert got == want
    assert c.verify_steps > 0 and c.accepted_tokens == c.drafted_tokens


def test_garbage_drafts_accept_nothing_and_change_nothing():
    got, c = run(4, 64, True, True, 64, 1, 0.0, [([5, 6, 7], 20), ([9, 9], 12)])
    want, _ = run(0, 64, True, False, 64, 1, 0.0, [([5, 6, 7], 20), ([9, 9], 12)])
    assert got == want
    assert c.accepted_tokens == 0


def test_truncate_releases_rejected_pages():
    s = make(0, 32, False, 64, None)
    r = Request("a", list(range(2, 8)), SamplingParams(max_new_tokens=8), 0, lambda d: None)
    s.add(r)
    s.kv.admit(r)
    assert s.kv.reserve(r, 14)  # 6 prompt tokens + 8 more: 4 pages of 4
    s.kv.advance(r, 14, unverified=7)
    before = s.kv.allocator.num_free
    s.kv.truncate(r, 8)
    assert len(r.pages) == 2 and s.kv.allocator.num_free == before + 2
    assert r.num_computed == 8 and r.num_unverified == 0
    s.kv.check()


def test_unverified_draft_kv_never_reaches_the_cache():
    """A request retracted (released into the cache) while its verify is in flight: only
    the pages of final tokens are cached, never a page holding draft KV."""
    s = make(0, 32, True, 64, None)
    r = Request("a", list(range(2, 11)), SamplingParams(max_new_tokens=8), 0, lambda d: None)
    s.kv.admit(r)
    assert s.kv.reserve(r, 9)
    s.kv.advance(r, 8)  # prompt of 9: KV for 8 positions, the 9th token is the decode input
    assert s.kv.reserve(r, 13)
    s.kv.advance(r, 13, unverified=4)  # verify: last token + 4 drafts in flight
    s.kv.release(r, cache_it=True)
    cache = s.kv.cache
    assert cache.total_cached_pages == 2  # positions 0..7: the final tokens' whole pages
    assert cache.match_prefix(list(range(2, 11)) + [0] * 4).num_tokens == 8
    s.kv.check()
