"""Scheduler and KV manager without a model: batch composition, exact pages, chunking,
retraction order, abort, stop conditions, and the memory invariant."""

import pytest
import torch
from anyware.memory import PageAllocator, PageTable
from anyware.memory.radix_cache import RadixCache
from anyware.plugin import ForwardMode
from anyware.request.params import SamplingParams
from anyware.request.request import Request
from anyware.scheduler import Scheduler, SchedulerConfig
from anyware.scheduler.kv_manager import KVManager


def make(num_pages=32, page_size=4, chunk=2048, max_running=8, cache=False, mixed=True,
         conservativeness=0.0):
    alloc = PageAllocator(num_pages)
    table = PageTable(max_running, 64, torch.device("cpu"))
    radix = RadixCache(page_size, alloc.free) if cache else None
    kv = KVManager(alloc, table, page_size, radix)
    return Scheduler(SchedulerConfig(max_running, chunk, mixed, 256,
                                     schedule_conservativeness=conservativeness),
                     kv, eos_token_ids=(1,))


def req(rid, n, max_new=8, events=None, **kw):
    sink = (events.append if events is not None else (lambda d: None))
    return Request(rid, list(range(10, 10 + n)), SamplingParams(max_new_tokens=max_new,
                                                                 temperature=0, **kw), 0, sink)


def step(s, token=7):
    batch = s.schedule()
    if batch is None:
        return None
    n = sum(batch.sampling_rows())
    s.process(batch, [[token]] * n, None)
    s.kv.check()
    return batch


def test_prefill_then_decode_with_exact_pages():
    s = make()
    a, b = req("a", 6), req("b", 3)
    s.add(a)
    s.add(b)
    batch = step(s)
    assert batch.mode is ForwardMode.EXTEND
    assert batch.extend_lens == [6, 3] and batch.prefix_lens == [0, 0]
    assert a.pages == [1, 2] and b.pages == [3]
    batch = step(s)
    assert batch.mode is ForwardMode.DECODE and batch.extend_lens == [1, 1]
    assert batch.prefix_lens == [6, 3]
    assert a.pages == [1, 2] and b.pages == [3]  # position 6 and 3 fit the existing pages
    step(s)
    assert b.pages == [3, 4]  # b's 5th token (position 4) starts a page


def test_chunked_prefill_respects_budget_and_mixes_with_decode():
    s = make(chunk=5)
    a, b = req("a", 3), req("b", 12)
    s.add(a)
    s.add(b)
    first = step(s)
    assert first.extend_lens == [3, 2] and first.sampling_rows() == [True, False]
    second = step(s)
    assert second.mode is ForwardMode.MIXED
    assert [r.rid for r in second.reqs] == ["b", "a"] and second.extend_lens == [5, 1]
    third = step(s)
    assert third.extend_lens == [5, 1] and third.sampling_rows() == [True, True]
    assert b.output_ids == [7]


def test_mixed_off_separates_prefill_and_decode():
    s = make(mixed=False)
    s.add(req("a", 3))
    step(s)
    s.add(req("b", 3))
    assert step(s).mode is ForwardMode.DECODE
    assert step(s).mode is ForwardMode.DECODE  # b waits while a decodes... until a finishes
    s2 = make(mixed=False)
    s2.add(req("c", 3))
    assert step(s2).mode is ForwardMode.EXTEND


def test_retraction_requeues_newest_first_and_frees_pages():
    s = make(num_pages=6, page_size=2)  # 5 usable pages
    a, b = req("a", 4, max_new=50), req("b", 3, max_new=50)
    s.add(a)
    s.add(b)
    step(s)
    assert a.pages == [1, 2] and b.pages == [3, 4]
    step(s)  # a's position 4 opens page 5; b's position 3 fits page 4
    assert a.pages == [1, 2, 5] and b.pages == [3, 4]
    step(s)  # b's position 4 needs a page: none left, so b (the newest) is retracted
    assert list(s.waiting) == [b] and b.retractions == 1 and b.pages == []
    assert s.running == [a] and a.retractions == 0
    assert b.output_ids == [7, 7]  # kept: it resumes by recomputing prompt + outputs
    assert s.kv.allocator.num_free == 2


def test_stop_conditions_and_finish_events():
    events = []
    s = make()
    s.add(req("eos", 3, max_new=5, events=events))
    step(s, token=1)
    assert events[-1].finished and events[-1].finish_reason == "stop"
    s.add(req("len", 3, max_new=2, events=events))
    step(s)
    step(s)
    assert events[-1].finish_reason == "length" and events[-1].request_id == "len"
    s.add(req("ign", 3, max_new=2, events=events, ignore_eos=True))
    step(s, token=1)
    assert not events[-1].finished  # eos ignored
    step(s, token=1)
    assert events[-1].finish_reason == "length"
    assert s.kv.allocator.num_free == s.kv.allocator.capacity


def test_abort_waiting_and_running_frees_everything():
    events = []
    s = make()
    s.add(req("r", 9, events=events))
    s.add(req("w", 3, events=events))
    s.cfg = SchedulerConfig(1, 2048, True, 256)  # only one may run
    step(s)
    assert s.abort("w") and events[-1].finish_reason == "abort"
    assert s.abort("r") and events[-1].request_id == "r"
    assert not s.abort("nope")
    assert s.kv.allocator.num_free == s.kv.allocator.capacity and not s.has_work()


def test_prefix_cache_reuse_and_invariant():
    s = make(cache=True)
    a = req("a", 10, max_new=2)
    s.add(a)
    while s.has_work():
        step(s)
    b = req("b", 10, max_new=2)
    s.add(b)
    batch = step(s)
    assert batch.prefix_lens == [8]  # two full pages of 4 reused
    assert b.cached_tokens == 8
    while s.has_work():
        step(s)
    s.kv.check()
    s.kv.cache.check_invariants()


def test_prefix_is_shared_as_soon_as_its_prefill_completes():
    s = make(cache=True)
    a = req("a", 10, max_new=20)
    s.add(a)
    step(s)  # a's prefill completes; a keeps decoding
    assert a.is_running and a.num_cache_pages == 2
    b = req("b", 10, max_new=2)
    s.add(b)
    batch = step(s)
    assert b.cached_tokens == 8 and batch.prefix_lens[batch.reqs.index(b)] == 8
    assert b.pages[:2] == a.pages[:2]  # the same physical pages
    s.kv.check()


def test_uncovered_lists_only_requests_whose_pages_end_at_their_next_position():
    s = make(page_size=4)
    a, b = req("a", 4), req("b", 6)
    for r in (a, b):
        s.add(r)
    step(s)  # both prefilled: a has 1 page for 4 tokens, b 2 pages for 6
    assert (len(a.pages), a.num_computed, len(b.pages), b.num_computed) == (1, 4, 2, 6)
    assert s.kv.uncovered([a, b]) == [a]  # a's 5th position needs a page, b's 7th does not
    assert s.kv.uncovered([a, b], ahead=3) == [a, b]
    pages = list(b.pages)
    assert s.kv.reserve(b, 8) and b.pages == pages  # covered: nothing taken
    s.kv.check()


def test_admission_skips_the_policy_when_no_request_can_be_admitted():
    from anyware.scheduler.policy import FCFSPolicy

    class Counting(FCFSPolicy):
        calls = 0

        def order(self, waiting, prefix_len):
            Counting.calls += 1
            return super().order(waiting, prefix_len)

    s = make(max_running=2)
    s.policy = Counting()
    for i in range(3):
        s.add(req(f"r{i}", 4, max_new=3))
    step(s)  # admits two: the running list is full
    assert Counting.calls == 1 and len(s.running) == 2
    step(s)
    assert Counting.calls == 1  # full: not ranked
    while s.has_work():
        step(s)
    assert Counting.calls > 1 and s.counters.finished == 3


def _drain(s, limit=2000):
    """Step until nothing is left; (tokens computed, largest running batch)."""
    steps = widest = tokens = 0
    while s.has_work() and steps < limit:
        batch = step(s)
        tokens += sum(batch.extend_lens) if batch is not None else 0
        steps += 1
        widest = max(widest, len(s.running))
    assert not s.has_work(), "the scheduler did not finish"
    return tokens, widest


def test_output_reserve_admits_what_will_fit_and_avoids_retraction():
    """16 requests of 8 prompt tokens that each decode 40 (no EOS) into 60 pages of 4 tokens:
    admitted on their prompts alone, 8 run at once and the pool runs out as they grow (each
    shortfall retracts the newest, which later computes its prompt and outputs again); with
    the output reserve, admission keeps 0.7 of their remaining output free: fewer run at once,
    fewer are retracted and less is computed twice. Every request gets all its tokens."""
    results = {}
    for c in (0.0, 1.0):
        s = make(num_pages=61, page_size=4, conservativeness=c)
        reqs = [req(f"r{i}", 8, max_new=40) for i in range(16)]
        for r in reqs:
            s.add(r)
        tokens, widest = _drain(s)
        assert all(len(r.output_ids) == 40 for r in reqs)
        results[c] = (s.counters.retractions, widest, tokens)
    (r0, w0, t0), (r1, w1, t1) = results[0.0], results[1.0]
    assert 16 * (8 + 39) <= t1 < t0, results  # the last token of each is sampled, not fed
    assert r1 < r0 and w1 < w0 == 8, results


def test_output_reserve_decays_and_resets_at_retraction():
    from anyware.scheduler.output_reserve import DECAY_STEPS, FLOOR_RATIO, INIT_RATIO, OutputReserve

    res = OutputReserve(2.0, make(page_size=4).kv, context_len=100)
    assert res.ratio == 2 * INIT_RATIO
    for _ in range(DECAY_STEPS + 5):
        res.step(retracted=False)
    assert abs(res.ratio - 2 * FLOOR_RATIO) < 1e-9
    res.step(retracted=True)
    assert res.ratio == 2 * INIT_RATIO
    r = req("a", 10, max_new=30)  # 10 prompt tokens, none computed, no pages yet
    assert res.pages(r) == -(-(10 + 42) // 4)  # 1.4 x 30 = 42 output tokens expected
    r2 = req("b", 10, max_new=500)  # capped by the context: 90 tokens left, not 500
    assert res.pages(r2) == -(-(10 + 126) // 4)
    assert not OutputReserve(0.0, make().kv, 100).enabled
    with pytest.raises(ValueError, match=">= 0"):
        OutputReserve(-1.0, make().kv, 100)


def test_a_lone_request_is_admitted_whatever_its_reserve():
    """Nothing running: a request whose expected growth exceeds the pool still starts (it
    may finish early); the reserve only decides who joins a running batch."""
    s = make(num_pages=8, page_size=4, conservativeness=1.0)  # 7 usable pages = 28 tokens
    a = req("a", 8, max_new=100)
    s.add(a)
    assert step(s).extend_lens == [8] and s.running == [a]


def test_output_reserve_total_is_cached_and_rechecked():
    """The running total is an overestimate kept across steps (a sum over every running
    request is too slow per step): recomputed when asked exactly (at most every
    RECHECK_STEPS steps), every REFRESH_STEPS steps, and after a retraction."""
    from anyware.scheduler.output_reserve import RECHECK_STEPS, REFRESH_STEPS, OutputReserve

    res = OutputReserve(1.0, make(page_size=4).kv, context_len=1000)
    running = [req("a", 8, max_new=40), req("b", 8, max_new=40)]
    first = res.total(running)
    assert first == 2 * res.pages(running[0]) > 0
    running.pop()  # b left: the cached total still counts it
    assert res.total(running) == first
    assert res.total(running, exact=True) == first  # an exact check only every RECHECK_STEPS
    for _ in range(RECHECK_STEPS):
        res.step(retracted=False)
    assert res.total(running, exact=True) == res.pages(running[0])
    running.append(req("c", 8, max_new=40))
    assert res.admitted(running[-1]) == sum(map(res.pages, running))
    running.pop(0)
    for _ in range(REFRESH_STEPS):
        res.step(retracted=False)
    assert res.total(running) == sum(map(res.pages, running))
    running.append(req("d", 8, max_new=40))
    res.step(retracted=True)
    assert res.total(running) == sum(map(res.pages, running))
