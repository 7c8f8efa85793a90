"""`CudaGraphExecution`: decode steps replayed from CUDA graphs captured per batch-size bucket.

``setup`` allocates the attention backend's persistent metadata buffers and captures one graph
per bucket on a dummy decode batch (largest first, all sharing one memory pool). ``run`` pads
a decode batch to the smallest bucket that holds it, copies its inputs into the captured
batch's tensors, lets the backend ``update`` its buffers (graph-safe) and replays. Other
batches (extend, mixed, verify, or decode above the largest bucket) run eagerly.

In graph mode a backend must read per-step metadata that changes shape (page tables, lengths)
from the buffers it fills in ``update``: the captured batch's own ``page_table`` keeps the
dummy batch's width and only its overlapping columns are refreshed.
"""

from __future__ import annotations

import bisect

import torch
from anyware.plugin import ExecutionStrategy, ForwardBatch, ForwardMode, StepProgram

_STATIC_FIELDS = ("input_ids", "positions", "seq_lens", "prefix_lens", "extend_lens",
                  "extend_start", "out_slots", "logits_indices")


def default_buckets(max_batch_size: int) -> tuple[int, ...]:
    """1, 2, 4, 8, then every multiple of 8 up to ``max_batch_size`` (which is included)."""
    sizes = {b for b in (1, 2, 4, 8) if b <= max_batch_size}
    sizes.update(range(16, max_batch_size + 1, 8))
    sizes.add(max_batch_size)
    return tuple(sorted(sizes))


class CudaGraphExecution(ExecutionStrategy):
    kind = "graphs"

    def __init__(self, batch_sizes: tuple[int, ...] | None = None, max_batch_size: int = 256,
                 warmup: int = 2) -> None:
        self.batch_sizes = tuple(sorted(set(batch_sizes or default_buckets(max_batch_size))))
        self.warmup = warmup
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, ForwardBatch, torch.Tensor]] = {}
        self.replays = 0
        self.eager_runs = 0

    @property
    def max_batch_size(self) -> int:
        return self.batch_sizes[-1]

    def setup(self, program: StepProgram) -> None:
        super().setup(program)
        attn = program.attention
        page_size = program.dummy_decode_batch(1).page_size
        max_pages = -(-attn.spec.max_context_len // page_size) + 1
        attn.init_graph_buffers(self.max_batch_size, max_pages)
        pool = torch.cuda.graph_pool_handle()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        for bs in reversed(self.batch_sizes):
            batch = program.dummy_decode_batch(bs)
            attn.prepare(batch)
            attn.update(batch)
            with torch.cuda.stream(stream):
                for _ in range(self.warmup):  # triton compiles / autotunes outside capture
                    program.forward(batch)
            stream.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool, stream=stream):
                out = program.forward(batch)
            self._graphs[bs] = (graph, batch, out)
        torch.cuda.current_stream().wait_stream(stream)
        torch.cuda.synchronize()

    def bucket_for(self, batch_size: int) -> int | None:
        i = bisect.bisect_left(self.batch_sizes, batch_size)
        return self.batch_sizes[i] if i < len(self.batch_sizes) else None

    def run(self, batch: ForwardBatch) -> torch.Tensor:
        bucket = self.bucket_for(batch.batch_size) if batch.mode is ForwardMode.DECODE else None
        if bucket is None or bucket not in self._graphs:
            self.eager_runs += 1
            attn = self.program.attention
            attn.prepare(batch)
            attn.update(batch)
            return self.program.forward(batch)
        graph, static, out = self._graphs[bucket]
        padded = batch if bucket == batch.batch_size else self.program.pad_decode_batch(batch, bucket)
        for name in _STATIC_FIELDS:
            getattr(static, name).copy_(getattr(padded, name), non_blocking=True)
        cols = min(static.page_table.shape[1], padded.page_table.shape[1])
        static.page_table[:, :cols].copy_(padded.page_table[:, :cols], non_blocking=True)
        self.program.attention.update(padded)
        graph.replay()
        self.replays += 1
        return out[: batch.logits_indices.shape[0]].clone()

    def close(self) -> None:
        self._graphs.clear()
