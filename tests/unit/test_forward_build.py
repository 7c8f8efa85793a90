"""`ForwardBatch.build`: the decode fast path and the packed host->device copy give the same
batch as the per-request layout it replaces."""

from __future__ import annotations

import random

import pytest
import torch
from anyware.plugin import ForwardBatch, ForwardMode


def reference(prefix_lens, extend_lens, logits_all, logit_requests, logit_counts):
    """The token layout spelled out request by request."""
    positions, starts, rows, row = [], [], [], 0
    for i, (p, e) in enumerate(zip(prefix_lens, extend_lens)):
        starts.append(row)
        positions += list(range(p, p + e))
        if logits_all:
            n = e
        elif logit_counts is not None:
            n = logit_counts[i]
        else:
            n = int(logit_requests[i]) if logit_requests else 1
        rows += list(range(row + e - n, row + e))
        row += e
    return positions, starts, rows


CASES = [
    ("decode", [1] * 7, {}),
    ("decode, logit_counts", [1] * 7, {"logit_counts": [1] * 7}),
    ("decode, one without logits", [1] * 7, {"logit_requests": [True] * 6 + [False]}),
    ("decode, logits_all", [1] * 7, {"logits_all": True}),
    ("decode, count 0", [1] * 7, {"logit_counts": [1, 1, 0, 1, 1, 1, 1]}),
    ("extend", [5, 1, 3, 1, 2, 1, 4], {}),
    ("verify counts", [3, 3, 1, 3, 1, 3, 3], {"logit_counts": [3, 3, 1, 3, 1, 3, 0]}),
    ("extend, logits_all", [5, 1, 3, 1, 2, 1, 4], {"logits_all": True}),
    ("empty", [], {}),
]


@pytest.mark.parametrize(("name", "extend_lens", "kw"), CASES, ids=[c[0] for c in CASES])
def test_build_matches_the_per_request_layout(name, extend_lens, kw):
    rng = random.Random(name)
    b, n = len(extend_lens), sum(extend_lens)
    prefix_lens = [rng.randrange(0, 90) for _ in range(b)]
    ids = [rng.randrange(-b, 300) for _ in range(n)]
    slots = [rng.randrange(16, 4096) for _ in range(n)]
    table = torch.arange(b * 6, dtype=torch.int32).view(b, 6)
    fb = ForwardBatch.build(mode=ForwardMode.MIXED, input_ids=ids, prefix_lens=prefix_lens,
                            extend_lens=extend_lens, page_table=table, out_slots=slots,
                            page_size=16, device="cpu", **kw)
    positions, starts, rows = reference(prefix_lens, extend_lens, kw.get("logits_all", False),
                                        kw.get("logit_requests"), kw.get("logit_counts"))
    seq = [p + e for p, e in zip(prefix_lens, extend_lens)]
    assert fb.input_ids.tolist() == ids and fb.input_ids.dtype == torch.int64
    assert fb.positions.tolist() == positions and fb.positions.dtype == torch.int64
    assert fb.out_slots.tolist() == slots and fb.out_slots.dtype == torch.int64
    assert fb.logits_indices.tolist() == rows and fb.logits_indices.dtype == torch.int64
    for t, want in ((fb.seq_lens, seq), (fb.prefix_lens, prefix_lens),
                    (fb.extend_lens, extend_lens), (fb.extend_start, starts)):
        assert t.tolist() == want and t.dtype == torch.int32
    assert (fb.seq_lens_cpu, fb.prefix_lens_cpu, fb.extend_lens_cpu) == (
        seq, prefix_lens, extend_lens)
    assert fb.page_table.tolist() == table.tolist()
    # the host lists are the batch's own: changing the caller's lists changes nothing
    prefix_lens.append(1)
    assert len(fb.prefix_lens_cpu) == b
