"""`StepPlan`: one step's forward as plain host data, the same on every rank.

Rank 0 builds it from the scheduled batch (the requests' tokens and pages) and, under tensor
parallelism, broadcasts it; every rank turns it into the same :class:`ForwardBatch`. It holds
lists of ints only, never ``Request`` objects, so it pickles small and fast.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class StepPlan:
    """mode: the ``ForwardMode`` value. input_ids: the new tokens (``-(row + 1)`` for a token
    sampled by a step still in flight). prefix_lens / extend_lens / logit_counts: per request.
    out_slots: the KV slot of each new token. rows / width: the page-table rows of the batch
    and the columns it reads. page_updates: ``(row, column, page)`` entries set since the last
    plan (every rank mirrors rank 0's page table). num_draft_tokens: per request in VERIFY
    mode, else 0. publish_rows: the rows whose sampled token rank 0 broadcasts after the step
    (each rank keeps them for placeholders). tree_parents: in a VERIFY step with tree drafts,
    per request its nodes' parents (``DraftTree.parents``; empty for a chain row), else
    ``None``. kv_moves: ``(source, destination)`` KV slot copies rank 0 queued since the last
    plan (accepted tree paths), which every rank applies before this step's forward."""

    mode: str
    input_ids: list[int]
    prefix_lens: list[int]
    extend_lens: list[int]
    logit_counts: list[int]
    out_slots: list[int]
    rows: list[int]
    width: int
    page_updates: list[tuple[int, int, int]]
    num_draft_tokens: int = 0
    publish_rows: list[int] | None = None
    tree_parents: list[list[int]] | None = None
    kv_moves: list[tuple[int, int]] | None = None
