"""Scheduler and KV manager without a model: batch composition, exact pages, chunking,
retraction order, abort, stop conditions, and the memory invariant."""

import torch
from anyware.memory import PageAllocator, PageTable
from anyware.memory.radix_cache import RadixCache
from anyware.plugin import ForwardMode
from anyware.request.params import SamplingParams
from anyware.request.request import Request
from anyware.scheduler import Scheduler, SchedulerConfig
from anyware.scheduler.kv_manager import KVManager


def make(num_pages=32, page_size=4, chunk=2048, max_running=8, cache=False, mixed=True):
    alloc = PageAllocator(num_pages)
    table = PageTable(max_running, 64, torch.device("cpu"))
    radix = RadixCache(page_size, alloc.free) if cache else None
    kv = KVManager(alloc, table, page_size, radix)
    return Scheduler(SchedulerConfig(max_running, chunk, mixed, 256), kv, eos_token_ids=(1,))


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
