"""The scheduler under overlap: schedule/commit of step N+1 before step N's tokens arrive.

Placeholders stand for tokens in flight, stop rules act one step late, the extra decode of a
stopped request is dropped, length limits never cost that step, and every page comes back.
"""

import torch
from anyware.executor.future import FutureTokens
from anyware.request.request import placeholder

from tests.unit.test_scheduler import make, req


def launch(s):
    batch = s.schedule()
    if batch is not None:
        s.commit(batch)
    return batch


def tokens_for(batch, value):
    return [[value]] * sum(batch.sampling_rows())


def test_placeholders_stand_for_tokens_in_flight():
    s = make()
    a = req("a", 6)
    s.add(a)
    first = launch(s)  # prefill: samples a's first token
    assert a.output_ids == [placeholder(a.row)] and a.num_computed == 6
    second = launch(s)  # decode of that token, scheduled before it arrived
    assert second.extend_lens == [1] and second.prefix_lens == [6]
    assert a.output_ids == [placeholder(a.row)] * 2 and second.out_index == [1]
    s.process(first, [[42]], None)
    assert a.output_ids == [42, placeholder(a.row)]
    s.process(second, [[43]], None)
    assert a.output_ids == [42, 43]
    s.kv.check()


def test_stop_token_drops_the_extra_decode_and_frees_everything():
    events = []
    s = make()
    a = req("a", 5, max_new=8, events=events)
    s.add(a)
    b1 = launch(s)
    b2 = launch(s)
    s.process(b1, [[1]], None)  # EOS (id 1): a stops while b2 decodes its token
    assert a.finished and a.finish_reason == "stop" and a.output_ids == [1]
    b3 = launch(s)
    assert b3 is None  # nothing left to schedule
    s.process(b2, [[9]], None)  # the extra decode's token is dropped
    assert a.output_ids == [1]
    assert [d.token_ids for d in events] == [[1]] and events[-1].finished
    assert not s.has_work()
    s.kv.check()
    assert s.kv.allocator.num_free == s.kv.allocator.capacity


def test_length_limit_never_schedules_past_the_last_token():
    s = make()
    a = req("a", 4, max_new=2)
    s.add(a)
    b1, b2 = launch(s), launch(s)
    assert b2.reqs == [a]  # decode of token 1 -> samples token 2, the last
    assert launch(s) is None  # a's final token is in flight: no third step
    s.process(b1, [[7]], None)
    s.process(b2, [[8]], None)
    assert a.output_ids == [7, 8] and a.finish_reason == "length"
    s.kv.check()


def test_retracted_request_keeps_its_token_in_flight():
    """A request retracted while its token is in flight receives that token in the queue and
    resumes from it."""
    s = make(num_pages=12, page_size=4)  # 11 usable pages: one request (7 pages) at a time
    a, b = req("a", 8, max_new=20), req("b", 8, max_new=20)
    s.add(a)
    s.add(b)
    inflight = launch(s)
    retracted, i = 0, 0
    while inflight is not None or s.has_work():  # EngineCore.step in overlap mode
        nxt = launch(s)
        if inflight is not None:
            s.process(inflight, tokens_for(inflight, 5 + i % 3), None)
        s.kv.check()
        retracted = max(retracted, s.counters.retractions)
        inflight, i = nxt, i + 1
        assert i < 200
    assert retracted > 0 and not s.has_work()
    for r in (a, b):
        assert r.finish_reason == "length" and len(r.output_ids) == 20
        assert all(t >= 5 for t in r.output_ids), r.output_ids
    assert s.kv.allocator.num_free == s.kv.allocator.capacity


def test_future_tokens_resolve_in_order():
    fut = FutureTokens(4, torch.device("cpu"))
    fut.publish([2, 0], torch.tensor([11, 12]))
    ids = torch.tensor([5, placeholder(2), placeholder(0), 7])
    assert fut.resolve(ids).tolist() == [5, 11, 12, 7]
    fut.publish([2], torch.tensor([13]))
    assert fut.resolve(ids).tolist() == [5, 13, 12, 7]
