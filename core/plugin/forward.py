"""`ForwardBatch`: the one description of a forward pass that crosses the plugin boundary.

Token layout. The new tokens of all requests are concatenated in request order: request
``i`` contributes ``extend_lens[i]`` tokens starting at row ``extend_start[i]``. Before this
step request ``i`` already has ``prefix_lens[i]`` tokens in the KV cache; after it,
``seq_lens[i] = prefix_lens[i] + extend_lens[i]``. The ``j``-th new token of request ``i``
sits at position ``prefix_lens[i] + j`` and, with a causal mask, attends to KV positions
``0 .. prefix_lens[i] + j``.

Paging. The KV cache of a layer is addressed by *slot*: ``slot = page * page_size + offset``.
``page_table[i, p]`` is the page holding positions ``p*page_size .. (p+1)*page_size - 1`` of
request ``i`` (entries past the request's pages are unspecified). ``out_slots[t]`` is the
slot where the KV of new token ``t`` is written.

Modes. DECODE: every ``extend_len`` is 1. EXTEND: prefill (any prefix). VERIFY: each request
carries ``spec.num_draft_tokens + 1`` tokens and needs logits for all of them (with a
``spec.tree_mask``, 1 to ``num_draft_tokens + 1`` tokens: tree drafts of different sizes
in one batch). MIXED: prefill and decode (or verify) requests in one batch.

Device tensors are on the platform's device; the ``*_cpu`` lists are host copies for the
host-side ``prepare`` step of attention backends (dynamic shapes allowed there, never in the
graph-safe ``update``).
"""

from __future__ import annotations

import enum
from array import array
from dataclasses import dataclass, field

import torch


def _int64_tensor(values: list[int]) -> torch.Tensor:
    """A host int64 tensor of ``values``: through an ``array`` (C-speed conversion, ~4x
    faster than ``torch.tensor`` of a list); the tensor keeps the array alive."""
    if not values:
        return torch.empty(0, dtype=torch.int64)
    return torch.frombuffer(array("q", values), dtype=torch.int64)


class ForwardMode(enum.Enum):
    EXTEND = "extend"
    DECODE = "decode"
    VERIFY = "verify"
    MIXED = "mixed"


@dataclass
class SpecInfo:
    """Speculative-verify metadata (mode VERIFY).

    num_draft_tokens: draft tokens per request (each request verifies that many + 1).
    tree_mask: optional bool ``[B, n, n]`` with ``n = num_draft_tokens + 1``: ``tree_mask[i, a, b]``
        says whether new token ``a`` of request ``i`` may attend to new token ``b``. The
        prefix is always visible. ``None`` means a chain (causal) draft. With a tree mask a
        request may carry fewer than ``n`` new tokens (its ``extend_len``; the mask's rows
        and columns past them are unused), and the positions are the batch's ``positions``
        (the engine gives a tree node ``prefix + depth``), not ``prefix + row``.
    """

    num_draft_tokens: int
    tree_mask: torch.Tensor | None = None


@dataclass
class ForwardBatch:
    """Everything a model forward and an attention backend need for one step.

    Shapes: ``T`` new tokens, ``B`` requests, ``P`` page-table columns, ``L`` logit rows.

    input_ids: int64 ``[T]``.
    positions: int64 ``[T]``.
    seq_lens: int32 ``[B]`` KV length after this step.
    prefix_lens: int32 ``[B]`` KV length already cached before this step.
    extend_lens: int32 ``[B]`` new tokens per request.
    extend_start: int32 ``[B]`` first row of each request in the token dimension.
    page_table: int32 ``[B, P]``.
    out_slots: int64 ``[T]`` KV slot of each new token.
    logits_indices: int64 ``[L]`` token rows whose hidden state goes to the LM head
        (the last new token of each request; every new token in VERIFY mode).
    page_size: tokens per KV page.
    seq_lens_cpu / prefix_lens_cpu / extend_lens_cpu: host copies of the same.
    spec: verify metadata (VERIFY only).
    padded_batch_size: when a strategy padded the batch to a request bucket, the padded ``B``
        (requests past the real ones carry one token each, ``seq_len`` 1, and read and write
        only the scratch page; see :mod:`anyware.plugin.padding`).
    padded_num_tokens: when a strategy padded the batch to a token bucket, the padded ``T``:
        an attention backend plans launch shapes from it, not from the lengths. Token rows
        past the last request belong to no request (input 0, position 0, scratch slot 0) and
        have unspecified outputs; lengths, ``seq_lens`` and the real ``logits_indices`` stay
        the real ones. Rows past the last request are only given to backends that declare
        ``AttentionFeatures.padded_prefill`` (or run under a compiled strategy).
    """

    mode: ForwardMode
    input_ids: torch.Tensor
    positions: torch.Tensor
    seq_lens: torch.Tensor
    prefix_lens: torch.Tensor
    extend_lens: torch.Tensor
    extend_start: torch.Tensor
    page_table: torch.Tensor
    out_slots: torch.Tensor
    logits_indices: torch.Tensor
    page_size: int
    seq_lens_cpu: list[int] = field(default_factory=list)
    prefix_lens_cpu: list[int] = field(default_factory=list)
    extend_lens_cpu: list[int] = field(default_factory=list)
    spec: SpecInfo | None = None
    padded_batch_size: int | None = None
    padded_num_tokens: int | None = None

    @property
    def batch_size(self) -> int:
        return int(self.seq_lens.shape[0])

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def max_seq_len(self) -> int:
        return max(self.seq_lens_cpu, default=0)

    @property
    def max_extend_len(self) -> int:
        return max(self.extend_lens_cpu, default=0)

    @classmethod
    def build(
        cls,
        *,
        mode: ForwardMode,
        input_ids: list[int],
        prefix_lens: list[int],
        extend_lens: list[int],
        page_table: torch.Tensor,
        out_slots: list[int],
        page_size: int,
        device: torch.device | str,
        logits_all: bool = False,
        logit_requests: list[bool] | None = None,
        logit_counts: list[int] | None = None,
        spec: SpecInfo | None = None,
    ) -> ForwardBatch:
        """Build a batch from host lists (the engine's and the conformance suite's helper).

        Logit rows: every new token with ``logits_all``; else the last ``logit_counts[i]`` new
        tokens of request ``i`` (a verify row needs all of its tokens); else the last new token
        of each request, or of the requests flagged in ``logit_requests``.
        """
        if not (len(prefix_lens) == len(extend_lens) == page_table.shape[0]):
            raise ValueError("prefix_lens, extend_lens and page_table rows must agree")
        if sum(extend_lens) != len(input_ids) or len(out_slots) != len(input_ids):
            raise ValueError("input_ids / out_slots length must equal sum(extend_lens)")
        b, n = len(extend_lens), len(input_ids)
        prefix_lens, extend_lens = list(prefix_lens), list(extend_lens)
        if n == b and (not b or min(extend_lens) == 1) and (
                logits_all or (logit_counts or logit_requests or [1] * b).count(1) == b):
            # one new token per request (decode), each with a logit row: no per-request loop
            seq_lens = [p + 1 for p in prefix_lens]
            positions, starts = prefix_lens, list(range(b))
            logit_rows = starts
        else:
            seq_lens = [p + e for p, e in zip(prefix_lens, extend_lens)]
            positions, starts, logit_rows = _token_layout(
                prefix_lens, extend_lens, logits_all, logit_requests, logit_counts)

        # one host->device copy for all index vectors, then views (the int32 ones converted
        # there, together)
        packed = _int64_tensor(input_ids + positions + out_slots + logit_rows + seq_lens
                               + prefix_lens + extend_lens + starts)
        packed = packed.to(device, non_blocking=True)
        ids_t, pos_t, slots_t, logit_t, lens_t = packed.split([n, n, n, len(logit_rows), 4 * b])
        seq_t, pre_t, ext_t, start_t = lens_t.to(torch.int32).split([b] * 4)
        return cls(
            mode=mode,
            input_ids=ids_t,
            positions=pos_t,
            seq_lens=seq_t,
            prefix_lens=pre_t,
            extend_lens=ext_t,
            extend_start=start_t,
            page_table=page_table.to(device=device, dtype=torch.int32),
            out_slots=slots_t,
            logits_indices=logit_t,
            page_size=page_size,
            seq_lens_cpu=seq_lens,
            prefix_lens_cpu=prefix_lens,
            extend_lens_cpu=extend_lens,
            spec=spec,
        )


def _token_layout(prefix_lens: list[int], extend_lens: list[int], logits_all: bool,
                  logit_requests: list[bool] | None, logit_counts: list[int] | None,
                  ) -> tuple[list[int], list[int], list[int]]:
    """``positions``, ``extend_start`` and logit rows of a batch (see :meth:`ForwardBatch.build`)."""
    starts, positions, logit_rows, row = [], [], [], 0
    if logit_counts is None:
        wants = logit_requests or [True] * len(extend_lens)
        logit_counts = [int(w) for w in wants]
    for p, e, c in zip(prefix_lens, extend_lens, logit_counts):
        starts.append(row)
        positions.extend(range(p, p + e))
        if logits_all:
            logit_rows.extend(range(row, row + e))
        elif c == 1:
            logit_rows.append(row + e - 1)
        elif c:
            logit_rows.extend(range(row + e - c, row + e))
        row += e
    return positions, starts, logit_rows
