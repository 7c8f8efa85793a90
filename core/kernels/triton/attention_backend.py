"""`TritonAttentionBackend`: paged attention on the portable Triton kernels.

``prepare`` (host) picks the kernel from ``batch.mode`` and sizes grids and scratch from the
host lists; ``update`` (graph-safe) copies the decode metadata into persistent buffers
allocated by ``init_graph_buffers``; ``forward`` stores K/V, then runs the decode kernel
(DECODE) or the extend kernel (EXTEND, VERIFY: causal, or a tree mask read on the device). A MIXED batch is split: the trailing
rows with one new token each (the engine puts decodes last) go through the decode kernel, the
rest through the extend kernel, each writing its rows of one output. The extend kernel would
read every KV head once per query head for a one-token row, the decode kernel reads it once
per group.

Prefill graphs (``AttentionFeatures.padded_prefill``): a one-request fresh prefill padded to a
token bucket plans from ``padded_num_tokens`` alone (grid, dense row count) and reads the
real lengths from the batch tensors, so a graph captured on the bucket replays any prompt
that fits it.

Chain verify (``verify_by_decode``, on by default) runs the split-KV decode kernel with one
query row per new token: row ``t`` sees ``positions[t] + 1`` KV positions through the page-table
row of its request, both filled by ``update`` on the device (no host lengths). Each row is
computed exactly as a decode step of the same requests at that position (same kernel, same
``num_splits``), so verify and decode agree bit for bit in attention, and long contexts get
split-KV parallelism (the extend kernel has one program per request and head). A tree verify
takes the extend kernel with the mask read on the device.

Decode launch tuning: ``decode_block_n``, ``decode_num_warps``, ``decode_num_stages`` (``None``:
the kernel's defaults), ``decode_heads_first`` (the grid's order) and ``decode_fp16_compute``
(an fp8 cache's tiles in fp16, default on; all of them also from the
platform options ``triton_<attribute>``, read before any capture) go to every decode-kernel launch (decode, the decode rows of a MIXED
batch, chain verify), and ``decode_target_programs`` to every split count (``_num_splits``),
so verify keeps the split count and launch configuration of a decode step of the same number
of requests. A captured graph keeps the configuration it was captured with: set them before
the execution strategy captures (``benchmarks/run.py --backend-attr`` sets them after the
engine is built, so they reach eager steps only, e.g. decode batches above the largest graph).

Verify graphs (``AttentionFeatures.padded_verify``): a VERIFY batch padded to ``n`` requests
and ``n * (k + 1)`` tokens plans from the bucket alone (``num_splits`` of ``n`` requests at the
context length, per-row buffers cached per bucket); lengths and rows come from the batch
tensors (which the graph strategy refreshes before each replay) through ``update``, so requests
with fewer than ``k + 1`` tokens (decode rows, a draft model's catch-up) replay through the
same graph. Rows past the last request read the scratch page: finite, unused.

Dense prefill: an EXTEND batch of a few requests with no cached prefix and at least
``dense_min_tokens`` new tokens (a long fresh prompt, W3's TTFT) needs no paged gather, so its attention runs through ``torch``'s fused
``scaled_dot_product_attention`` on the new K/V (the flash kernel on GPUs; 2.3-3.6x faster
than our extend kernel at 1-4k tokens on an H100) in half precision. Everything else, and fp32,
stays on the Triton kernels.
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
from anyware.kernels.triton.options import OPTION_PREFIX, apply_platform_options
from anyware.kernels.triton.store import store_kv
from anyware.plugin import (
    AttentionBackend,
    AttentionFeatures,
    AttentionLayer,
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
    dense: bool = False  # fresh prompts only: attention over the new K/V through SDPA
    dense_lens: tuple[int, ...] = ()  # token rows of each request on the dense path
    zero_fill: bool = False  # rows of no request (a padded verify) get zeros, not garbage
    tree: bool = False  # a tree verify: new tokens see what ``spec.tree_mask`` allows


@dataclass
class _VerifyPlan:
    """A chain verify through the decode kernel: per token row, its KV length and its
    request's page-table row (filled by ``update``), the split count and scratch."""

    seq: torch.Tensor  # int32 [T]: positions + 1
    rows: torch.Tensor  # int32 [T]: request of each token row
    tokens: torch.Tensor  # int32 [T]: 0 .. T-1
    num_splits: int
    workspace: tuple[torch.Tensor, torch.Tensor]


@dataclass
class _MixedPlan:
    """Rows ``[:split]`` (tokens ``[:split_token]``) extend; rows ``split:`` decode."""

    split: int
    split_token: int
    extend: _ExtendPlan
    decode: _DecodePlan


TUNABLE = ("decode_block_n", "decode_num_warps", "decode_num_stages", "decode_heads_first",
           "decode_target_programs", "decode_fp16_compute", "decode_fused_reduce",
           "decode_even_dims", "decode_k_rows", "pdl")


class TritonAttentionBackend(AttentionBackend):
    """Split-KV decode and causal extend over the NHD paged cache (any page size)."""

    name = "triton"
    features = AttentionFeatures(
        extend_with_prefix=True,
        decode=True,
        verify=True,
        tree_mask=True,
        sliding_window=True,
        logit_softcap=True,
        padded_prefill=True,
        padded_verify=True,
    )
    page_sizes = (16, 1, 8, 32, 64)
    # fp8 e4m3: stored saturated (scale 1.0), loaded and converted to the compute dtype in
    # the kernels (checked under the Triton interpreter only; docs/quantization.md)
    kv_dtypes = (torch.bfloat16, torch.float16, torch.float32, torch.float8_e4m3fn)
    priority = 10

    def __init__(self, platform, spec) -> None:
        super().__init__(platform, spec)
        self._plan: _DecodePlan | _ExtendPlan | None = None
        self._buf_seq: torch.Tensor | None = None
        self._buf_pt: torch.Tensor | None = None
        # split scratch of graph-replayed decode steps, kept alive per (batch size, splits)
        self._graph_ws: dict[tuple[int, int], tuple[torch.Tensor, ...]] = {}
        # per-row buffers of graph-replayed verify steps, kept alive per (tokens, splits)
        self._verify_plans: dict[tuple[int, int], _VerifyPlan] = {}
        # chain verify through the decode kernel (else the extend kernel)
        self.verify_by_decode = True
        # dense prefill through torch SDPA: on by default for half-precision accelerators
        self.dense_prefill = platform.device.type != "cpu"
        self.dense_max_requests = 8
        # below this many new tokens the step is bound by launching kernels from Python, and
        # the SDPA path's extra launches cost more than its faster kernel saves (H100, 8B:
        # 1024 tokens 28.2 ms Triton vs 35.7 ms dense; 4096 tokens 123.8 vs 108.0 ms)
        self.dense_min_tokens = 2048
        # MIXED: one-token rows through the decode kernel when their KV is large enough that
        # the extend kernel's per-query-head re-reads miss the L2 cache. Measured on an H100:
        # 8B / 230 rows of ~1.5k tokens (1.4 GiB per layer) gains 35% (W2); 0.5B / 250 rows of
        # ~600 tokens (~75 MiB) loses 10% to the extra launches (W6).
        self.split_mixed = True
        self.split_mixed_min_kv_bytes = 256 << 20
        # decode-kernel launch configuration (None: the kernel's defaults) and the programs
        # per launch that the split count aims at (``choose_num_splits``); for tuning sweeps
        self.decode_block_n: int | None = None
        self.decode_num_warps: int | None = None
        self.decode_num_stages: int | None = None
        self.decode_heads_first = False
        self.decode_target_programs = 512
        # an fp8 cache is read into fp16 tiles (decode_attention's ``fp16_compute``)
        self.decode_fp16_compute = True
        # the splits merged by the split launch's last program (decode_attention's
        # ``fused_reduce``), not by a second launch
        self.decode_fused_reduce = True
        # unmasked head-dim loads where the dims are powers of two; K tiles as [positions, D]
        self.decode_even_dims = True
        self.decode_k_rows = False
        # the KV store and decode kernels launched with programmatic dependent launch (pdl.py;
        # option ``triton_pdl``, whose default the platform sets where the device has it)
        self.pdl = False
        # the same, from the platform options (``--platform-option triton_decode_block_n=128``):
        # set here, before any graph is captured
        apply_platform_options(self, platform, OPTION_PREFIX, TUNABLE)

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
        if batch.mode is ForwardMode.VERIFY:
            spec = batch.spec
            tree = spec is not None and spec.tree_mask is not None
            padded = batch.padded_num_tokens is not None and spec is not None
            if self.verify_by_decode and not tree:
                self._plan = self._verify_plan(batch, padded)
            elif padded:
                # a verify graph: the grid from k alone, lengths (and mask) from the tensors
                self._plan = _ExtendPlan(spec.num_draft_tokens + 1, zero_fill=True, tree=tree)
            else:
                self._plan = _ExtendPlan(batch.max_extend_len, tree=tree)
            return
        if batch.mode is ForwardMode.MIXED and self.split_mixed:
            self._plan = self._mixed_plan(batch)
            return
        if batch.padded_num_tokens is not None:
            # a prefill graph: launch shapes from the padded count, lengths from the tensors.
            # The dense path runs over all padded rows: causal, so padding (at the end) never
            # reaches a real row; it has no launch-cost threshold once replayed from a graph.
            n = batch.padded_num_tokens
            self._plan = _ExtendPlan(n, self.dense_prefill, (n,))
            return
        if batch.mode is not ForwardMode.DECODE:
            dense = (self.dense_prefill and batch.mode is ForwardMode.EXTEND
                     and batch.batch_size <= self.dense_max_requests
                     and sum(batch.extend_lens_cpu) >= self.dense_min_tokens
                     and not any(batch.prefix_lens_cpu))
            self._plan = _ExtendPlan(batch.max_extend_len, dense,
                                     tuple(batch.extend_lens_cpu) if dense else ())
            return
        bsz = batch.batch_size
        s = self.spec
        if self._fits_buffers(batch):
            # launch constants must not depend on this batch's lengths: graphs replay them
            splits = self._num_splits(bsz, s.max_context_len)
            seq, pt = self._buf_seq[:bsz], self._buf_pt[:bsz]
            ws = self._graph_ws.get((bsz, splits))
            if ws is None:
                ws = decode_workspace(bsz, s.num_heads, splits, s.v_head_dim, seq.device)
                self._graph_ws[(bsz, splits)] = ws
            from_buffers = True
        else:
            splits = self._num_splits(bsz, batch.max_seq_len)
            seq, pt = batch.seq_lens, batch.page_table
            ws = decode_workspace(bsz, s.num_heads, splits, s.v_head_dim, seq.device)
            from_buffers = False
        self._plan = _DecodePlan(seq, pt, splits, ws, from_buffers)

    def _num_splits(self, num_requests: int, max_seq_len: int) -> int:
        """The split count of every decode-kernel plan (decode, MIXED decode rows, verify):
        one rule, so a verify of ``n`` requests splits as a decode step of ``n`` does."""
        return choose_num_splits(num_requests, self.spec.num_kv_heads, max_seq_len,
                                 target_programs=self.decode_target_programs)

    def _decode_launch(self) -> dict:
        """Launch configuration of every decode-kernel call (``None``: kernel defaults)."""
        return dict(block_n=self.decode_block_n, num_warps=self.decode_num_warps,
                    num_stages=self.decode_num_stages, heads_first=self.decode_heads_first,
                    fp16_compute=self.decode_fp16_compute,
                    fused_reduce=self.decode_fused_reduce,
                    even_dims=self.decode_even_dims, k_rows=self.decode_k_rows, pdl=self.pdl)

    def _verify_plan(self, batch: ForwardBatch, padded: bool) -> _VerifyPlan:
        """The decode-kernel plan of a chain verify. Padded (a graph): launch constants from
        the bucket alone and buffers kept per (tokens, splits); else fresh ones."""
        t, s = batch.num_tokens, self.spec
        n = batch.padded_batch_size or batch.batch_size
        dev = batch.input_ids.device
        if padded:
            splits = self._num_splits(n, s.max_context_len)
            plan = self._verify_plans.get((t, splits))
            if plan is not None:
                return plan
        else:
            splits = self._num_splits(n, batch.max_seq_len)
        plan = _VerifyPlan(torch.ones((t,), dtype=torch.int32, device=dev),
                           torch.zeros((t,), dtype=torch.int32, device=dev),
                           torch.arange(t, dtype=torch.int32, device=dev), splits,
                           decode_workspace(t, s.num_heads, splits, s.v_head_dim, dev))
        if padded:
            self._verify_plans[(t, splits)] = plan
        return plan

    def _mixed_plan(self, batch: ForwardBatch) -> _ExtendPlan | _MixedPlan:
        ext = batch.extend_lens_cpu
        split = len(ext)
        while split > 0 and ext[split - 1] == 1:
            split -= 1
        s, nd = self.spec, len(ext) - split
        itemsize = torch.empty((), dtype=s.dtype).element_size()
        kv_bytes = sum(batch.seq_lens_cpu[split:]) * s.num_kv_heads * (
            s.head_dim + s.v_head_dim) * itemsize
        if split == len(ext) or kv_bytes < self.split_mixed_min_kv_bytes:
            return _ExtendPlan(max_extend_len=batch.max_extend_len)
        seq, pt = batch.seq_lens[split:], batch.page_table[split:]
        splits = self._num_splits(nd, max(batch.seq_lens_cpu[split:]))
        ws = decode_workspace(nd, s.num_heads, splits, s.v_head_dim, seq.device)
        return _MixedPlan(split, sum(ext[:split]), _ExtendPlan(max(ext[:split], default=0)),
                          _DecodePlan(seq, pt, splits, ws, False))

    # ------------------------------------------------------------ graph-safe step
    def update(self, batch: ForwardBatch) -> None:
        # keyed on the batch, not on the last plan: a graph strategy replays a decode graph
        # captured earlier while other (eager) steps prepared other plans in between
        if batch.mode is ForwardMode.VERIFY:
            self._update_verify(batch)
            return
        if batch.mode is not ForwardMode.DECODE or not self._fits_buffers(batch):
            return
        bsz, cols = batch.batch_size, batch.page_table.shape[1]
        self._buf_seq[:bsz].copy_(batch.seq_lens, non_blocking=True)
        self._buf_pt[:bsz, :cols].copy_(batch.page_table, non_blocking=True)

    def _update_verify(self, batch: ForwardBatch) -> None:
        """Per-row KV lengths and page-table rows of a chain verify (device ops only): the
        bucket's buffers for a padded batch (a graph replay), else the plan just prepared."""
        if batch.spec is not None and batch.spec.tree_mask is not None:
            return
        t, plans = batch.num_tokens, []
        if batch.padded_num_tokens is not None and batch.spec is not None:
            # the bucket's plans, whatever split count each graph was captured with (a changed
            # ``decode_target_programs`` keys a new plan; the captured graph reads the old one)
            plans = [p for (tokens, _), p in self._verify_plans.items() if tokens == t]
        if not plans and isinstance(self._plan, _VerifyPlan):
            plans = [self._plan]
        plans = [p for p in plans if p.seq.shape[0] == t]
        if not plans:
            return
        seq = batch.positions + 1
        rows = torch.searchsorted(batch.extend_start.to(torch.int32), plans[0].tokens,
                                  right=True) - 1
        for plan in plans:
            plan.seq.copy_(seq, non_blocking=True)
            plan.rows.copy_(rows, non_blocking=True)

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
        store_kv(k_cache, v_cache, k, v, batch.out_slots, pdl=self.pdl)
        plan = self._plan
        if plan is None:
            raise RuntimeError("TritonAttentionBackend.forward before prepare()")
        if isinstance(plan, _DecodePlan):
            return self._decode(q, k_cache, v_cache, plan, layer, batch.page_size)
        if isinstance(plan, _VerifyPlan):
            return decode_attention(
                q, k_cache, v_cache, batch.page_table, plan.seq, batch.page_size, layer.scale,
                plan.num_splits, workspace=plan.workspace, rows=plan.rows,
                sliding_window=layer.sliding_window, logit_softcap=layer.logit_softcap,
                **self._decode_launch(),
            )
        if isinstance(plan, _ExtendPlan):
            if plan.dense and self._dense_ok(q, layer):
                return self._dense_prefill(q, k, v, layer, plan.dense_lens)
            out = None
            if plan.zero_fill:
                out = torch.zeros((q.shape[0], q.shape[1], v_cache.shape[2]), dtype=q.dtype,
                                  device=q.device)
            return extend_attention(
                q, k_cache, v_cache, batch.page_table, batch.prefix_lens, batch.extend_lens,
                batch.extend_start, plan.max_extend_len, batch.page_size, layer.scale,
                out=out, sliding_window=layer.sliding_window, logit_softcap=layer.logit_softcap,
                tree_mask=batch.spec.tree_mask if plan.tree else None,
            )
        r, t = plan.split, plan.split_token
        out = torch.empty((q.shape[0], q.shape[1], v_cache.shape[2]), dtype=q.dtype,
                          device=q.device)
        extend_attention(
            q[:t], k_cache, v_cache, batch.page_table[:r], batch.prefix_lens[:r],
            batch.extend_lens[:r], batch.extend_start[:r], plan.extend.max_extend_len,
            batch.page_size, layer.scale, out=out[:t],
            sliding_window=layer.sliding_window, logit_softcap=layer.logit_softcap,
        )
        self._decode(q[t:], k_cache, v_cache, plan.decode, layer, batch.page_size, out=out[t:])
        return out

    def _dense_ok(self, q: torch.Tensor, layer: AttentionLayer) -> bool:
        return (layer.sliding_window is None and not layer.logit_softcap
                and (q.dtype != torch.float32 or not self.dense_prefill_half_only))

    dense_prefill_half_only = True  # fp32 keeps the Triton kernel (tests may lift this)

    @staticmethod
    def _dense_prefill(q, k, v, layer: AttentionLayer, lens: tuple[int, ...]) -> torch.Tensor:
        """Causal attention of each request's new tokens over themselves (no prefix)."""
        group = q.shape[1] // k.shape[1]
        out = torch.empty((q.shape[0], q.shape[1], v.shape[2]), dtype=q.dtype, device=q.device)
        start = 0
        for n in lens:
            qi = q[start:start + n].transpose(0, 1)
            ki = k[start:start + n].transpose(0, 1)
            vi = v[start:start + n].transpose(0, 1)
            if group > 1:  # expanded K/V keep the flash kernel eligible
                ki = ki.repeat_interleave(group, dim=0)
                vi = vi.repeat_interleave(group, dim=0)
            o = torch.nn.functional.scaled_dot_product_attention(
                qi[None], ki[None], vi[None], is_causal=True, scale=layer.scale)
            out[start:start + n] = o[0].transpose(0, 1)
            start += n
        return out

    def _decode(self, q, k_cache, v_cache, plan: _DecodePlan, layer: AttentionLayer,
                page_size: int, out: torch.Tensor | None = None) -> torch.Tensor:
        return decode_attention(
            q, k_cache, v_cache, plan.page_table, plan.seq_lens, page_size, layer.scale,
            plan.num_splits, out=out, workspace=plan.workspace,
            sliding_window=layer.sliding_window, logit_softcap=layer.logit_softcap,
            **self._decode_launch(),
        )
