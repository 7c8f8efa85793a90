"""Padding a `ForwardBatch` to a shape bucket: the one entry point execution strategies use.

A graph strategy replays work captured for fixed shapes; a compiled (XLA) strategy runs a
program compiled for fixed shapes. Both pad the step's batch up to a :class:`Bucket` with
:meth:`StepProgram.pad`, and build the batch they capture or compile on with
:meth:`StepProgram.dummy`. A `StepProgram` implements both with :func:`pad_batch` and
:func:`dummy_batch` (the core's `ModelRunner` and the conformance suite's tiny model do).

Semantics of ``pad_batch(batch, bucket)`` for a batch of ``B`` requests, ``T`` new tokens and
``P`` page-table columns, any mode (DECODE, EXTEND, MIXED, VERIFY), padded to
``Bucket(tokens=Tn, requests=Bn, pages=Pn)``:

* **Real requests and tokens are unchanged**: rows ``0..T-1`` of the token tensors, rows
  ``0..B-1`` of the request tensors, the ``*_cpu`` lists' first ``B`` entries, and
  ``logits_indices`` (the real logit rows, first).
* **Padding requests** (rows ``B..Bn-1``) each carry one new token at token row ``T + j``
  (``j`` = 0, 1, ...): ``extend_len`` 1, ``prefix_len`` 0, ``seq_len`` 1, ``extend_start``
  ``T + j``, input id 0, position 0, ``out_slot`` 0 and a page-table row of zeros, so they
  read and write only the scratch page (page 0, never allocated to a request). Each adds one
  logit row (its token) after the real ones; with every real request sampling (DECODE) the
  logit rows are ``0..Bn-1``. In VERIFY the tree mask gains a causal block per padding
  request (only its ``[0, 0]`` entry is used).
* **Padding tokens** (rows ``T + (Bn - B) .. Tn-1``) belong to no request: input id 0,
  position 0, ``out_slot`` 0 (the scratch page), no logit row; their outputs are unspecified.
  Only backends that accept tokens past the last request (``AttentionFeatures.padded_prefill``
  or a compiled strategy's own backend) may be given a token bucket larger than that.
* **The page table** is widened to ``Pn`` columns with zeros (the scratch page).
* ``padded_batch_size`` is set to ``Bn`` when ``bucket.requests`` is given;
  ``padded_num_tokens`` to ``Tn`` when ``bucket.tokens`` is given (attention backends then
  plan launch shapes from it, not from the lengths). A field left ``None`` in the bucket keeps
  the batch's size in that dimension (tokens: ``T`` plus the padding requests' tokens; pages:
  ``full_width`` when the caller gives it, else ``P``) and leaves its marker as it was.

A bucket smaller than the batch in any dimension is a :class:`ValueError`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from anyware.plugin.forward import ForwardBatch, ForwardMode, SpecInfo


@dataclass(frozen=True)
class Bucket:
    """A padded shape: new ``tokens``, ``requests`` and page-table columns (``pages``) per
    request. ``None`` keeps the batch's own size in that dimension (see the module doc)."""

    tokens: int | None = None
    requests: int | None = None
    pages: int | None = None

    def __post_init__(self) -> None:
        for name in ("tokens", "requests", "pages"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"Bucket.{name} must be >= 0, got {value}")


def pad_batch(batch: ForwardBatch, bucket: Bucket, *, full_width: int | None = None) -> ForwardBatch:
    """``batch`` padded to ``bucket`` (semantics in the module doc); a new batch, ``batch`` is
    not modified. ``full_width`` is the page-table width used when ``bucket.pages`` is None."""
    b, t, width = batch.batch_size, batch.num_tokens, batch.page_table.shape[1]
    bn = b if bucket.requests is None else bucket.requests
    if bn < b:
        raise ValueError(f"cannot pad a batch of {b} requests down to {bn}")
    pad_reqs = bn - b
    tn = t + pad_reqs if bucket.tokens is None else bucket.tokens
    if tn < t + pad_reqs:
        raise ValueError(f"a bucket of {tn} tokens cannot hold {t} tokens plus {pad_reqs} "
                         "padding requests of one token each")
    pages = bucket.pages if bucket.pages is not None else (full_width or width)
    if pages < width:
        raise ValueError(f"cannot narrow a page table of {width} columns to {pages}")
    pad_toks = tn - t
    dev = batch.input_ids.device

    def cat(x: torch.Tensor, n: int, fill: int) -> torch.Tensor:
        return torch.cat([x, torch.full((n,), fill, dtype=x.dtype, device=dev)])

    table = torch.zeros((bn, pages), dtype=torch.int32, device=dev)
    table[:b, :width] = batch.page_table
    first_pad_row = torch.arange(t, t + pad_reqs, dtype=torch.int64, device=dev)
    spec = batch.spec
    if spec is not None and spec.tree_mask is not None and pad_reqs:
        n = spec.tree_mask.shape[-1]
        causal = torch.ones((n, n), dtype=torch.bool, device=spec.tree_mask.device).tril()
        mask = torch.cat([spec.tree_mask, causal.expand(pad_reqs, n, n).to(spec.tree_mask.dtype)])
        spec = SpecInfo(spec.num_draft_tokens, mask)
    return dataclasses.replace(
        batch,
        input_ids=cat(batch.input_ids, pad_toks, 0),
        positions=cat(batch.positions, pad_toks, 0),
        seq_lens=cat(batch.seq_lens, pad_reqs, 1),
        prefix_lens=cat(batch.prefix_lens, pad_reqs, 0),
        extend_lens=cat(batch.extend_lens, pad_reqs, 1),
        extend_start=torch.cat([batch.extend_start, first_pad_row.to(batch.extend_start.dtype)]),
        page_table=table,
        out_slots=cat(batch.out_slots, pad_toks, 0),
        logits_indices=torch.cat([batch.logits_indices,
                                  first_pad_row.to(batch.logits_indices.dtype)]),
        seq_lens_cpu=batch.seq_lens_cpu + [1] * pad_reqs,
        prefix_lens_cpu=batch.prefix_lens_cpu + [0] * pad_reqs,
        extend_lens_cpu=batch.extend_lens_cpu + [1] * pad_reqs,
        spec=spec,
        padded_batch_size=bn if bucket.requests is not None else batch.padded_batch_size,
        padded_num_tokens=tn if bucket.tokens is not None else batch.padded_num_tokens,
    )


def dummy_batch(mode: ForwardMode, bucket: Bucket, *, page_size: int, full_width: int,
                device: torch.device | str) -> ForwardBatch:
    """A batch of ``mode`` that reads and writes only the scratch page, shaped like
    ``bucket`` (what a strategy captures or compiles on).

    ``R = bucket.requests`` (default 1) requests and ``N = bucket.tokens`` (default ``R``)
    new tokens, all with no prefix, input ids 0, slots 0 and page-table rows of zeros
    ``bucket.pages`` (default ``full_width``) wide. DECODE: one token per request. VERIFY:
    ``N // R`` tokens per request (a chain draft of ``N // R - 1``), a logit row for each.
    EXTEND and MIXED: request 0 carries ``N - (R - 1)`` tokens, the others one each. Tokens
    left over belong to no request (as in :func:`pad_batch`). Marked ``padded_batch_size``
    / ``padded_num_tokens`` where the bucket gives them, like a padded batch.
    """
    r = 1 if bucket.requests is None else bucket.requests
    n = r if bucket.tokens is None else bucket.tokens
    if r < 1 or n < r:
        raise ValueError(f"a dummy batch needs 1 <= requests <= tokens, got {bucket}")
    spec = None
    if mode is ForwardMode.DECODE:
        ext = [1] * r
    elif mode is ForwardMode.VERIFY:
        ext = [n // r] * r
        spec = SpecInfo(n // r - 1)
    else:
        ext = [n - (r - 1)] + [1] * (r - 1)
    used = sum(ext)
    table = torch.zeros((r, bucket.pages or full_width), dtype=torch.int32)
    batch = ForwardBatch.build(
        mode=mode, input_ids=[0] * used, prefix_lens=[0] * r, extend_lens=ext,
        page_table=table, out_slots=[0] * used, page_size=page_size, device=device,
        logits_all=mode is ForwardMode.VERIFY, spec=spec)
    if used < n:
        batch = pad_batch(batch, Bucket(tokens=n))
    return dataclasses.replace(
        batch,
        padded_batch_size=bucket.requests if bucket.requests is not None else None,
        padded_num_tokens=bucket.tokens if bucket.tokens is not None else None)
