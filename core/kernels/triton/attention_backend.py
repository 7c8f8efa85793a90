"""`TritonAttentionBackend`: paged attention on the portable Triton kernels.

``prepare`` (host) picks the kernel from ``batch.mode`` and sizes grids and scratch from the
host lists; ``update`` (graph-safe) copies the decode metadata into persistent buffers
allocated by ``init_graph_buffers``; ``forward`` stores K/V, then runs the decode kernel
(DECODE) or the extend kernel (EXTEND, MIXED, chain VERIFY).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from anyware.kernels.triton.decode_attention import (
    choose_num_splits,
    decode_attention,
    decode_workspace,
)
from anyware.kernels.triton.extend_attention import extend_attention
from anyware.kernels.triton.store import store_kv
from anyware.plugin import (
    AttentionBackend,
    AttentionFeatures,
    AttentionLayer,
    CapabilityError,
    ForwardBatch,
    ForwardMode,
    KVCache,
)


@dataclass
class _DecodePlan:
    """Tensors and launch constants of one decode step (views of graph buffers or the batch)."""

    seq_lens: torch.Tensor
    page_table: torch.Tensor
    num_splits: int
    workspace: tuple[torch.Tensor, torch.Tensor]
    from_buffers: bool


@dataclass
class _ExtendPlan:
    max_extend_len: int


class TritonAttentionBackend(AttentionBackend):
    """Split-KV decode and causal extend over the NHD paged cache (any page size)."""

    name = "triton"
    features = AttentionFeatures(
        extend_with_prefix=True,
        decode=True,
        verify=True,
        tree_mask=False,
        sliding_window=True,
        logit_softcap=True,
    )
    page_sizes = (16, 1, 8, 32, 64)
    kv_dtypes = (torch.bfloat16, torch.float16, torch.float32)
    priority = 10

    def __init__(self, platform, spec) -> None:
        super().__init__(platform, spec)
        self._plan: _DecodePlan | _ExtendPlan | None = None
        self._buf_seq: torch.Tensor | None = None
        self._buf_pt: torch.Tensor | None = None
        # split scratch of graph-replayed decode steps, kept alive per (batch size, splits)
        self._graph_ws: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    # ------------------------------------------------------------ graph buffers
    def init_graph_buffers(self, max_batch_size: int, max_pages_per_req: int) -> None:
        dev = self.platform.device
        self._buf_seq = torch.ones((max_batch_size,), dtype=torch.int32, device=dev)
        self._buf_pt = torch.zeros((max_batch_size, max_pages_per_req), dtype=torch.int32,
                                   device=dev)

    def _fits_buffers(self, batch: ForwardBatch) -> bool:
        return (
            self._buf_seq is not None
            and batch.batch_size <= self._buf_seq.shape[0]
            and batch.page_table.shape[1] <= self._buf_pt.shape[1]
        )

    # ------------------------------------------------------------ host step
    def prepare(self, batch: ForwardBatch) -> None:
        if batch.mode is ForwardMode.VERIFY and batch.spec is not None and (
            batch.spec.tree_mask is not None
        ):
            raise CapabilityError("the triton attention backend does not support tree masks")
        if batch.mode is not ForwardMode.DECODE:
            self._plan = _ExtendPlan(max_extend_len=batch.max_extend_len)
            return
        bsz = batch.batch_size
        s = self.spec
        if self._fits_buffers(batch):
            # launch constants must not depend on this batch's lengths: graphs replay them
            splits = choose_num_splits(bsz, s.num_kv_heads, s.max_context_len)
            seq, pt = self._buf_seq[:bsz], self._buf_pt[:bsz]
            ws = self._graph_ws.get((bsz, splits))
            if ws is None:
                ws = decode_workspace(bsz, s.num_heads, splits, s.v_head_dim, seq.device)
                self._graph_ws[(bsz, splits)] = ws
            from_buffers = True
        else:
            splits = choose_num_splits(bsz, s.num_kv_heads, batch.max_seq_len)
            seq, pt = batch.seq_lens, batch.page_table
            ws = decode_workspace(bsz, s.num_heads, splits, s.v_head_dim, seq.device)
            from_buffers = False
        self._plan = _DecodePlan(seq, pt, splits, ws, from_buffers)

    # ------------------------------------------------------------ graph-safe step
    def update(self, batch: ForwardBatch) -> None:
        # keyed on the batch, not on the last plan: a graph strategy replays a decode graph
        # captured earlier while other (eager) steps prepared other plans in between
        if batch.mode is not ForwardMode.DECODE or not self._fits_buffers(batch):
            return
        bsz, cols = batch.batch_size, batch.page_table.shape[1]
        self._buf_seq[:bsz].copy_(batch.seq_lens, non_blocking=True)
        self._buf_pt[:bsz, :cols].copy_(batch.page_table, non_blocking=True)

    # ------------------------------------------------------------ per layer
    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        layer: AttentionLayer,
        cache: KVCache,
        batch: ForwardBatch,
    ) -> torch.Tensor:
        self.calls += 1
        k_cache, v_cache = cache.k[layer.layer_id], cache.v[layer.layer_id]
        store_kv(k_cache, v_cache, k, v, batch.out_slots)
        plan = self._plan
        if plan is None:
            raise RuntimeError("TritonAttentionBackend.forward before prepare()")
        if isinstance(plan, _DecodePlan):
            return decode_attention(
                q, k_cache, v_cache, plan.page_table, plan.seq_lens, batch.page_size,
                layer.scale, plan.num_splits, workspace=plan.workspace,
                sliding_window=layer.sliding_window, logit_softcap=layer.logit_softcap,
            )
        return extend_attention(
            q, k_cache, v_cache, batch.page_table, batch.prefix_lens, batch.extend_lens,
            batch.extend_start, plan.max_extend_len, batch.page_size, layer.scale,
            sliding_window=layer.sliding_window, logit_softcap=layer.logit_softcap,
        )
