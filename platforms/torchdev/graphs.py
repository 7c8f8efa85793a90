"""`TorchGraphExecution`: decode steps, short multi-token steps (speculative verify, a draft
model's catch-up) and fresh one-request prefills, replayed from device graphs of any torch
device module with graph capture (``torch.cuda``, ``torch.xpu``, ``torch.npu``; see
:mod:`anyware_torchdev.graph_api`).

``setup`` allocates the attention backend's persistent metadata buffers and captures one graph
per request bucket on ``program.dummy(DECODE, Bucket(requests=n))`` (largest first, all
sharing one memory pool). ``run`` pads a decode batch to the smallest bucket that holds it
(``program.pad(batch, Bucket(requests=n))``), copies its inputs into the captured batch's
tensors, lets the backend ``update`` its buffers (graph-safe) and replays.

Verify graphs: when the program runs multi-token steps (``StepProgram.verify_tokens = q``,
``k + 1`` for a target verifying ``k`` drafts, 2 for a draft model's catch-up) and the
attention backend declares ``AttentionFeatures.padded_verify``, ``setup`` also captures one
graph per request bucket up to ``max_verify_batch_size`` on ``program.dummy(VERIFY,
Bucket(tokens=n * q, requests=n))``. Any batch that is not a decode and whose requests each
carry 1 to ``q`` new tokens (a chain VERIFY with any number of drafts up to ``k``; a MIXED
step of verifies and decodes, as n-gram drafting gives when some requests have no match; a
draft model's catch-up of 1-2 tokens per request) is relabelled VERIFY with ``k = q - 1``,
padded to ``Bucket(tokens=n * q, requests=n)`` — so requests with fewer drafts are *not*
padded to ``k``: the backend reads each request's length from the tensors — its logit rows
are padded to the captured ``n * q`` (extra rows point at token 0 and are dropped), and the
graph replays. Tree masks, longer rows (a prefill chunk) and batches above the largest
verify bucket run eagerly.

Prefill graphs: when the attention backend declares ``AttentionFeatures.padded_prefill``,
``setup`` also captures one graph per token bucket (16, 32, 64, then every 128 up to the
chunked-prefill size, at most ``max_prefill_tokens``) on
``program.dummy(EXTEND, Bucket(tokens=n))``. An EXTEND batch of one request with no cached
prefix (a fresh prompt, or the first chunk of a long one) is padded to its token bucket and
replayed. Eager prefill of a large model is bound by launching ~500 kernels from Python (40-90
us per Triton launch on the H200 host measured), not by the device; the graph removes that.
Everything else (prefix hits with long chunks, several requests with long chunks, decode
above the largest bucket) runs eagerly.

Several strategies of one process (a target model and its draft model) may share one
:class:`GraphPool` (memory pool and capture stream): their graphs replay one after another on
one stream, and each replay's output is copied out before the next replay.

In graph mode a backend must read per-step metadata that changes shape (page tables, lengths)
from the buffers it fills in ``update`` or from the batch tensors: the captured batch's own
``page_table`` keeps the dummy batch's width and only its overlapping columns are refreshed.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
from types import ModuleType

import torch
from anyware.plugin import (
    Bucket,
    CapabilityError,
    ExecutionStrategy,
    ForwardBatch,
    ForwardMode,
    SpecInfo,
    StepProgram,
)
from anyware_torchdev.graph_api import graph_api

log = logging.getLogger(__name__)

_STATIC_FIELDS = ("input_ids", "positions", "seq_lens", "prefix_lens", "extend_lens",
                  "extend_start", "out_slots", "logits_indices")


def default_prefill_buckets(max_tokens: int) -> tuple[int, ...]:
    """16, 32, 64, then every multiple of 128 up to ``max_tokens`` (which is included)."""
    if max_tokens <= 0:
        return ()
    sizes = {t for t in (16, 32, 64) if t <= max_tokens}
    sizes.update(range(128, max_tokens + 1, 128))
    sizes.add(max_tokens)
    return tuple(sorted(sizes))


class GraphPool:
    """A graph memory pool and capture stream shared by the graph strategies of one process,
    created on first use (at ``setup``, after the device exists)."""

    def __init__(self) -> None:
        self._pool = self._stream = None

    def get(self, api) -> tuple[object, object]:
        """(pool handle, capture stream) of ``api``'s module."""
        if self._pool is None:
            self._pool, self._stream = api.pool_handle(), api.Stream()
        return self._pool, self._stream


FINE_BUCKETS_UPTO = 256


def default_buckets(max_batch_size: int) -> tuple[int, ...]:
    """1, 2, 4, 8, every multiple of 8 up to 256, then every multiple of 32 up to
    ``max_batch_size`` (which is included): above 256 rows a step is no longer launch-bound
    enough for 8 rows of padding to matter, and each bucket costs a capture."""
    sizes = {b for b in (1, 2, 4, 8) if b <= max_batch_size}
    sizes.update(range(16, min(max_batch_size, FINE_BUCKETS_UPTO) + 1, 8))
    sizes.update(range(FINE_BUCKETS_UPTO + 32, max_batch_size + 1, 32))
    sizes.add(max_batch_size)
    return tuple(sorted(sizes))


class TorchGraphExecution(ExecutionStrategy):
    """Graph capture and replay through ``module``'s graph API (kind ``graphs``).

    batch_sizes: decode request buckets (default :func:`default_buckets` of ``max_batch_size``);
        either way ``setup`` drops those above the program's ``max_requests`` (no batch is
        wider) and adds ``max_requests`` when ``max_batch_size`` is above it.
    warmup: eager forwards per bucket on the capture stream before capturing (kernels compile
        and autotune outside the capture).
    prefill_tokens: prefill token buckets (default :func:`default_prefill_buckets` of
        ``max_prefill_tokens``; ``max_prefill_tokens=0`` turns prefill graphs off).
    max_verify_batch_size: verify graphs are captured for the request buckets up to this
        (0 turns them off); they also need ``program.verify_tokens >= 2`` and the backend's
        ``padded_verify``.
    pool: a :class:`GraphPool` shared with other strategies of the process (default: its own).

    Counters for reports and tests: ``replays``, ``verify_replays``, ``prefill_replays``,
    ``eager_runs``.
    Constructing one touches no device; ``setup`` raises :class:`CapabilityError` when
    ``module`` has no graph API (:func:`anyware_torchdev.supports_graphs`).
    """

    kind = "graphs"

    def __init__(self, module: ModuleType, batch_sizes: tuple[int, ...] | None = None,
                 max_batch_size: int = 256, warmup: int = 2,
                 prefill_tokens: tuple[int, ...] | None = None,
                 max_prefill_tokens: int = 2048, max_verify_batch_size: int = 64,
                 pool: GraphPool | None = None) -> None:
        self.module = module
        self.batch_sizes = tuple(sorted(set(batch_sizes or default_buckets(max_batch_size))))
        if prefill_tokens is None:
            prefill_tokens = default_prefill_buckets(max_prefill_tokens)
        self.prefill_tokens = tuple(sorted(set(prefill_tokens)))
        self._max_verify = max_verify_batch_size
        self.verify_batch_sizes = tuple(b for b in self.batch_sizes if b <= max_verify_batch_size)
        self.verify_tokens = 0  # tokens per request of the verify graphs (set in setup)
        self.warmup = warmup
        self.pool = pool or GraphPool()
        self._graphs: dict[int, tuple[object, ForwardBatch, torch.Tensor]] = {}
        self._verify: dict[int, tuple[object, ForwardBatch, torch.Tensor]] = {}
        self._prefill: dict[int, tuple[object, ForwardBatch, torch.Tensor]] = {}
        # one logits buffer every graph copies its rows into (see _capture)
        self._logits: torch.Tensor | None = None
        self._logit_rows = 0
        self.replays = 0
        self.verify_replays = 0
        self.prefill_replays = 0
        self.eager_runs = 0

    @property
    def max_batch_size(self) -> int:
        return self.batch_sizes[-1]

    def setup(self, program: StepProgram) -> None:
        super().setup(program)
        api = graph_api(self.module)
        if api is None:
            raise CapabilityError(
                f"{self.module.__name__} has no graph capture in torch {torch.__version__} — "
                "use --execution eager, or a torch build with graphs for this device")
        self.api, attn = api, program.attention
        rows = getattr(program, "max_requests", None) or attn.spec.max_batch_size
        if self.max_batch_size > rows:  # no batch is wider than the program's rows
            self.batch_sizes = (*(b for b in self.batch_sizes if b < rows), rows)
            self.verify_batch_sizes = tuple(b for b in self.batch_sizes
                                            if b <= self._max_verify)
        page_size = program.dummy(ForwardMode.DECODE, Bucket(requests=1)).page_size
        max_pages = -(-attn.spec.max_context_len // page_size) + 1
        attn.init_graph_buffers(self.max_batch_size, max_pages)
        pool, stream = self.pool.get(api)
        if not attn.features.padded_prefill:
            self.prefill_tokens = ()
        # a bucket longer than the context would index rotary tables and page tables past
        # their end while capturing
        self.prefill_tokens = tuple(n for n in self.prefill_tokens
                                    if n <= attn.spec.max_context_len)
        q = int(getattr(program, "verify_tokens", 0) or 0)
        if q >= 2 and attn.features.padded_verify and q <= attn.spec.max_context_len:
            self.verify_tokens = q
        else:
            self.verify_batch_sizes = ()
        # largest first (by tokens): smaller graphs reuse the pool's blocks
        self._logit_rows = max([1, *self.batch_sizes,
                                *(n * q for n in self.verify_batch_sizes)])
        plan = ([(n, "prefill", n) for n in self.prefill_tokens]
                + [(n * q, "verify", n) for n in self.verify_batch_sizes]
                + [(n, "decode", n) for n in self.batch_sizes])
        for _, kind, n in sorted(plan, key=lambda p: -p[0]):
            if kind == "decode":
                dummy = program.dummy(ForwardMode.DECODE, Bucket(requests=n))
                self._graphs[n] = self._capture(dummy, pool, stream)
            elif kind in self._optional_kinds():
                self._capture_optional(kind, n, pool, stream)
        api.current_stream().wait_stream(stream)
        api.synchronize()

    def _optional_kinds(self) -> tuple[str, ...]:
        return tuple(k for k, on in (("prefill", self.prefill_tokens),
                                     ("verify", self.verify_batch_sizes)) if on)

    def _capture_optional(self, kind: str, n: int, pool, stream) -> None:
        """Capture a prefill (``n`` tokens) or verify (``n`` requests) graph; a capture that
        fails (e.g. an attention kernel that cannot be captured) turns that kind off."""
        if kind == "prefill":
            dummy, graphs = self.program.dummy(ForwardMode.EXTEND, Bucket(tokens=n)), self._prefill
        else:
            q = self.verify_tokens
            dummy = self.program.dummy(ForwardMode.VERIFY, Bucket(tokens=n * q, requests=n))
            graphs = self._verify
        try:
            graphs[n] = self._capture(dummy, pool, stream)
        except RuntimeError as exc:
            self.api.synchronize()
            log.warning("%s graphs disabled (capture failed: %s); those steps run eagerly",
                        kind, exc)
            graphs.clear()
            if kind == "prefill":
                self.prefill_tokens = ()
            else:
                self.verify_batch_sizes, self.verify_tokens = (), 0

    def _capture(self, batch: ForwardBatch, pool, stream):
        api, program, attn = self.api, self.program, self.program.attention
        attn.prepare(batch)
        attn.update(batch)
        # the batch and the backend's buffers were written on the current stream
        stream.wait_stream(api.current_stream())
        with api.stream(stream):
            out = None
            for _ in range(self.warmup):  # kernels compile / autotune outside capture
                out = program.forward(batch)
            if self._logits is None:  # its width and dtype, from an eager forward
                out = program.forward(batch) if out is None else out
                self._logits = out.new_empty((self._logit_rows, out.shape[1]))
        stream.synchronize()
        graph = api.graph_class()
        rows = batch.logits_indices.shape[0]
        shared = rows <= self._logits.shape[0]
        with api.graph(graph, pool=pool, stream=stream):
            out = program.forward(batch)
            if shared:
                # the graph's own logits are a temporary of the pool, reused by the next
                # capture; only the shared buffer stays. Without it every graph would keep
                # its [rows, vocab] fp32 output: 31 GB for buckets every 8 rows up to 1,024
                # with a 128k vocabulary (the H200's OOM in session 10)
                out = self._logits[:rows].copy_(out)
        return graph, batch, out

    def bucket_for(self, batch_size: int) -> int | None:
        i = bisect.bisect_left(self.batch_sizes, batch_size)
        return self.batch_sizes[i] if i < len(self.batch_sizes) else None

    def prefill_bucket_for(self, batch: ForwardBatch) -> int | None:
        """The token bucket whose graph can run ``batch``: one request, no cached prefix, at
        most one logit row; ``None`` when it must run eagerly."""
        if (batch.mode is not ForwardMode.EXTEND or batch.batch_size != 1
                or batch.prefix_lens_cpu != [0] or batch.logits_indices.shape[0] > 1):
            return None
        i = bisect.bisect_left(self.prefill_tokens, batch.num_tokens)
        return self.prefill_tokens[i] if i < len(self.prefill_tokens) else None

    def verify_bucket_for(self, batch: ForwardBatch) -> int | None:
        """The request bucket whose verify graph can run ``batch`` (not a decode; no tree
        mask; every request with 1 to ``verify_tokens`` new tokens); ``None`` when none."""
        if (not self.verify_batch_sizes or batch.mode is ForwardMode.DECODE
                or (batch.spec is not None and batch.spec.tree_mask is not None)
                or min(batch.extend_lens_cpu, default=0) < 1
                or batch.max_extend_len > self.verify_tokens):
            return None
        i = bisect.bisect_left(self.verify_batch_sizes, batch.batch_size)
        return self.verify_batch_sizes[i] if i < len(self.verify_batch_sizes) else None

    def run(self, batch: ForwardBatch) -> torch.Tensor:
        if batch.mode is ForwardMode.DECODE:
            bucket = self.bucket_for(batch.batch_size)
            if bucket in self._graphs:
                padded = (batch if bucket == batch.batch_size
                          else self.program.pad(batch, Bucket(requests=bucket)))
                self.replays += 1
                return self._replay(self._graphs[bucket], padded, batch.logits_indices.shape[0])
        else:
            bucket = self.prefill_bucket_for(batch)
            if bucket in self._prefill:
                rows = batch.logits_indices.shape[0]
                padded = self.program.pad(batch, Bucket(tokens=bucket))
                if rows == 0:  # an inner chunk: the captured logit row is computed, not returned
                    padded.logits_indices = padded.seq_lens.to(torch.int64) - 1
                self.prefill_replays += 1
                return self._replay(self._prefill[bucket], padded, rows)
            bucket = self.verify_bucket_for(batch)
            if bucket in self._verify:
                self.verify_replays += 1
                return self._replay(self._verify[bucket], self._pad_verify(batch, bucket),
                                    batch.logits_indices.shape[0])
        self.eager_runs += 1
        attn = self.program.attention
        attn.prepare(batch)
        attn.update(batch)
        return self.program.forward(batch)

    def _pad_verify(self, batch: ForwardBatch, bucket: int) -> ForwardBatch:
        """``batch`` relabelled VERIFY with ``k = verify_tokens - 1`` and padded to the verify
        graph of ``bucket`` requests, its logit rows padded to the captured count."""
        q = self.verify_tokens
        if (batch.mode is not ForwardMode.VERIFY or batch.spec is None
                or batch.spec.num_draft_tokens != q - 1):
            batch = dataclasses.replace(batch, mode=ForwardMode.VERIFY, spec=SpecInfo(q - 1))
        padded = self.program.pad(batch, Bucket(tokens=bucket * q, requests=bucket))
        rows = padded.logits_indices
        if rows.shape[0] < bucket * q:
            padded.logits_indices = torch.cat([rows, rows.new_zeros(bucket * q - rows.shape[0])])
        return padded

    def _replay(self, captured, padded: ForwardBatch, rows: int) -> torch.Tensor:
        graph, static, out = captured
        for name in _STATIC_FIELDS:
            getattr(static, name).copy_(getattr(padded, name), non_blocking=True)
        cols = min(static.page_table.shape[1], padded.page_table.shape[1])
        static.page_table[:, :cols].copy_(padded.page_table[:, :cols], non_blocking=True)
        self.program.attention.update(padded)
        graph.replay()
        return out[:rows].clone()

    def close(self) -> None:
        self._graphs.clear()
        self._verify.clear()
        self._prefill.clear()
        self._logits = None
