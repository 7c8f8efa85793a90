"""Mixture of experts: one :class:`MoEBackend` per MoE layer, contributed by a platform.

A sparse MoE layer computes, for every token ``t`` with hidden state ``x[t]``::

    (w[t], ids[t]) = route(router_logits[t])                        # k experts per token
    out[t] = sum_j w[t, j] * W2[ids[t, j]] @ (silu(G[ids[t, j]] @ x[t]) * (U[ids[t, j]] @ x[t]))

where ``G``/``U``/``W2`` are each expert's gate, up and down projections. The backend runs it
as four stages with exact shape contracts, so that each can be swapped and checked alone:

1. :meth:`MoEBackend.route`: router logits ``[T, E]`` -> ``(weights fp32 [T, k], ids int32
   [T, k])`` by the model's scoring rule (:class:`MoESpec`).
2. :meth:`MoEBackend.dispatch`: hidden ``[T, H]`` + routing -> :class:`Dispatched` rows grouped
   by this rank's experts. On one rank this is a local sort; under expert parallelism it is an
   all-to-all over the communicator given to the backend.
3. :meth:`MoEBackend.experts`: the gated MLP of each row's expert, **unweighted**.
4. :meth:`MoEBackend.combine`: rows back to tokens; **combine is the one stage that applies the
   routing weights** (``out[t] = sum_j w[t, j] * row(t, j)``).

:meth:`MoEBackend.forward` chains the four; a fused backend overrides it (the weights may then
be applied inside the down-projection GEMM) but must keep the stages callable, since the
conformance suite checks each one and ``forward`` against the same reference.

The expert weights are stored as the backend asks through :class:`MoEWeightLayout` (like the
KV cache's ``KVLayout``): the loader allocates them with the layout's shapes and dtype and packs
checkpoint tensors into them with its ``load_*`` methods.

Quantised experts (``MoESpec.quantization``): with ``"fp8"`` the experts are W8A8 e4m3, the
scheme of ``KernelOps.fp8_linear`` applied per expert. ``w13`` is e4m3 ``[E_local, 2 * I_pad, H]``
with ``w13_scale`` fp32 ``[E_local, 2 * I_pad]`` (one scale per output row of each expert:
``max(amax over H, 1e-12) / 448``), ``w2`` e4m3 ``[E_local, H, I_pad]`` with ``w2_scale`` fp32
``[E_local, H]`` (amax over ``I_pad``); padding rows/columns are zero (a padding row's scale is
the floor ``1e-12 / 448``) and contribute exactly 0. ``experts`` and ``forward`` then receive
``scales=(w13_scale, w2_scale)``; only backends that list the method in
:attr:`MoEBackend.quantizations` are given such a spec.

Graph safety: no stage may synchronise with the host (no ``.item()``, ``.tolist()``,
``nonzero()`` or data-dependent output shapes on one rank), so that a layer can be captured
in a device graph and overlapped with host scheduling.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from anyware.plugin.capabilities import QUANTIZATIONS

if TYPE_CHECKING:
    from anyware.plugin.ops.comm import Communicator

ROUTER_SCORING = ("softmax", "sigmoid")


@dataclass(frozen=True)
class MoESpec:
    """The facts of one MoE layer a backend is built for.

    num_experts: E, all experts of the layer (over every expert-parallel rank).
    top_k: k, experts per token.
    hidden_size: H. intermediate_size: I, one expert's gated-MLP width.
    dtype: the dtype of the hidden states (activations).
    scoring: ``"softmax"`` (softmax over all E logits, then top-k: Mixtral, Qwen-MoE) or
        ``"sigmoid"`` (sigmoid of each logit, then top-k: DeepSeek-V3 style, without groups).
    renormalize: divide the k chosen weights by their sum (Mixtral always; Qwen3-MoE when
        ``norm_topk_prob``).
    routed_scaling_factor: multiplies the final k weights (1.0 for Mixtral/Qwen).
    ep_rank, ep_size: this rank's place in the expert-parallel group; rank r holds experts
        ``[r * E_local, (r + 1) * E_local)`` with ``E_local = E / ep_size``.
    quantization: ``None`` (experts in the weight layout's dtype) or ``"fp8"`` (W8A8 e4m3
        experts with per-output-row weight scales, see the module docstring and
        :meth:`MoEBackend.experts`); one of ``anyware.plugin.capabilities.QUANTIZATIONS``.
    """

    num_experts: int
    top_k: int
    hidden_size: int
    intermediate_size: int
    dtype: torch.dtype
    scoring: str = "softmax"
    renormalize: bool = True
    routed_scaling_factor: float = 1.0
    ep_rank: int = 0
    ep_size: int = 1
    quantization: str | None = None

    def __post_init__(self) -> None:
        if self.quantization is not None and self.quantization not in QUANTIZATIONS:
            raise ValueError(f"MoE quantization {self.quantization!r}; known: "
                             f"{', '.join(QUANTIZATIONS)}")
        if self.scoring not in ROUTER_SCORING:
            raise ValueError(f"router scoring {self.scoring!r}; known: {', '.join(ROUTER_SCORING)}")
        if not 1 <= self.top_k <= self.num_experts:
            raise ValueError(f"top_k={self.top_k} must be in [1, num_experts={self.num_experts}]")
        if self.ep_size < 1 or not 0 <= self.ep_rank < self.ep_size:
            raise ValueError(f"expert-parallel rank {self.ep_rank} of {self.ep_size} is invalid")
        if self.num_experts % self.ep_size:
            raise ValueError(f"{self.num_experts} experts do not split over {self.ep_size} ranks")
        if self.hidden_size < 1 or self.intermediate_size < 1:
            raise ValueError("hidden and intermediate sizes must be positive")

    @property
    def num_local_experts(self) -> int:
        return self.num_experts // self.ep_size

    @property
    def first_local_expert(self) -> int:
        return self.ep_rank * self.num_local_experts


_SHARDS = ("gate", "up")


@dataclass(frozen=True)
class MoEWeightLayout:
    """How a backend wants the expert weights stored; the loader packs checkpoints into it.

    ``w13``: ``[E_local, 2 * I_pad, H]``; rows ``[0, I)`` hold an expert's gate projection,
    rows ``[I_pad, I_pad + I)`` its up projection (both ``[I, H]`` as in checkpoints).
    ``w2``: ``[E_local, H, I_pad]``; columns ``[0, I)`` hold its down projection ``[H, I]``.
    ``I_pad`` is I rounded up to ``intermediate_multiple``; padding rows/columns are zero, which
    is exact (``silu(0) * 0 = 0`` and zero columns add nothing). ``dtype`` None means the
    model's dtype. Both tensors are contiguous.
    """

    intermediate_multiple: int = 1
    dtype: torch.dtype | None = None

    def __post_init__(self) -> None:
        if self.intermediate_multiple < 1:
            raise ValueError("intermediate_multiple must be >= 1")

    def padded_intermediate(self, spec: MoESpec) -> int:
        m = self.intermediate_multiple
        return (spec.intermediate_size + m - 1) // m * m

    def weight_dtype(self, spec: MoESpec) -> torch.dtype:
        return self.dtype or spec.dtype

    def w13_shape(self, spec: MoESpec) -> tuple[int, int, int]:
        return (spec.num_local_experts, 2 * self.padded_intermediate(spec), spec.hidden_size)

    def w2_shape(self, spec: MoESpec) -> tuple[int, int, int]:
        return (spec.num_local_experts, spec.hidden_size, self.padded_intermediate(spec))

    def load_w13(self, w13: torch.Tensor, expert: int, shard: str, tensor: torch.Tensor,
                 spec: MoESpec) -> None:
        """Copy one local expert's ``gate`` or ``up`` projection ``[I, H]`` (or ``gate_up``,
        ``[2I, H]``, gate rows first) into ``w13``."""
        i, ip = spec.intermediate_size, self.padded_intermediate(spec)
        if shard == "gate_up":
            self.load_w13(w13, expert, "gate", tensor[:i], spec)
            self.load_w13(w13, expert, "up", tensor[i:], spec)
            return
        if shard not in _SHARDS:
            raise ValueError(f"w13 shard {shard!r}; known: gate, up, gate_up")
        want = (i, spec.hidden_size)
        if tuple(tensor.shape) != want:
            raise ValueError(f"expert {shard} projection: shape {tuple(tensor.shape)} != {want}")
        start = 0 if shard == "gate" else ip
        w13[expert, start : start + i].copy_(tensor)

    def load_w2(self, w2: torch.Tensor, expert: int, tensor: torch.Tensor, spec: MoESpec) -> None:
        """Copy one local expert's down projection ``[H, I]`` into ``w2``."""
        want = (spec.hidden_size, spec.intermediate_size)
        if tuple(tensor.shape) != want:
            raise ValueError(f"expert down projection: shape {tuple(tensor.shape)} != {want}")
        w2[expert, :, : spec.intermediate_size].copy_(tensor)

    def zero_padding(self, w13: torch.Tensor, w2: torch.Tensor, spec: MoESpec) -> None:
        """Zero the padding rows/columns (after random or partial initialisation)."""
        i, ip = spec.intermediate_size, self.padded_intermediate(spec)
        if ip != i:
            w13[:, i:ip].zero_()
            w13[:, ip + i :].zero_()
            w2[:, :, i:].zero_()

    def pack(self, gate: torch.Tensor, up: torch.Tensor, down: torch.Tensor,
             spec: MoESpec) -> tuple[torch.Tensor, torch.Tensor]:
        """New ``(w13, w2)`` from stacked local ``gate``/``up`` ``[E_local, I, H]`` and
        ``down`` ``[E_local, H, I]``, on their device (tests and the conformance suite)."""
        dt, dev = self.weight_dtype(spec), gate.device
        w13 = torch.zeros(self.w13_shape(spec), dtype=dt, device=dev)
        w2 = torch.zeros(self.w2_shape(spec), dtype=dt, device=dev)
        for e in range(spec.num_local_experts):
            self.load_w13(w13, e, "gate", gate[e], spec)
            self.load_w13(w13, e, "up", up[e], spec)
            self.load_w2(w2, e, down[e], spec)
        return w13, w2


@dataclass
class Dispatched:
    """Token rows grouped by this rank's experts (the output of :meth:`MoEBackend.dispatch`).

    hidden: ``[N, H]`` activation rows, sorted by local expert id (all rows of local expert 0,
        then expert 1, ...). On one rank ``N = T * k`` exactly (a static shape).
    expert_counts: int64 ``[E_local]`` on the device: rows per local expert, in order; it sums
        to N. Never read on the host.
    weights: fp32 ``[N]``: each row's routing weight (for ``combine``; experts ignore it).
    handle: dispatcher-private state ``combine`` needs (e.g. each row's token index).
    """

    hidden: torch.Tensor
    expert_counts: torch.Tensor
    weights: torch.Tensor
    handle: Any


class MoEBackend(ABC):
    """Runs one MoE layer's routing, dispatch, expert compute and combine on a platform.

    Contributed through one hook (``anyware_moe_backends``) and a platform's own
    ``_moe_backends()``; the core (``PlatformDriver.moe_backend``) picks the highest
    ``priority`` available one that accepts the spec. ``calls`` counts each stage run (``"route"``, ``"dispatch"``,
    ``"experts"``, ``"combine"``, ``"forward"``) so the conformance suite can tell that the
    platform's own code ran.
    """

    name: ClassVar[str]
    priority: ClassVar[int] = 0
    dtypes: ClassVar[frozenset[torch.dtype]] = frozenset(
        {torch.float32, torch.bfloat16, torch.float16})
    #: expert quantization methods (``MoESpec.quantization``) this backend runs, e.g.
    #: ``frozenset({"fp8"})``; empty: model-dtype experts only
    quantizations: ClassVar[frozenset[str]] = frozenset()
    #: whether it runs expert parallelism (``MoESpec.ep_size > 1``: ``dispatch`` sends rows to
    #: the ranks holding their experts over the communicator, ``combine`` brings them back);
    #: False: single-rank experts only (2.3)
    expert_parallel: ClassVar[bool] = False

    @classmethod
    def is_available(cls, platform) -> tuple[bool, str]:
        """``(usable on platform, why not)``; cheap, no allocations."""
        return True, ""

    @classmethod
    def unsupported(cls, spec: MoESpec) -> str | None:
        """Why this backend cannot run ``spec`` (None: it can). The default checks the dtype,
        the expert quantization (:attr:`quantizations`) and expert parallelism
        (:attr:`expert_parallel`), which is what a backend declares rather than overrides. An
        override need not repeat the quantization check: the core never hands a backend a
        quantized spec whose method its :attr:`quantizations` lacks."""
        if spec.dtype not in cls.dtypes:
            return f"no {spec.dtype} support"
        if spec.quantization is not None and spec.quantization not in cls.quantizations:
            return f"no {spec.quantization} experts"
        if spec.ep_size > 1 and not cls.expert_parallel:
            return "no expert parallelism (ep_size > 1)"
        return None

    def __init__(self, platform, spec: MoESpec, communicator: Communicator | None = None) -> None:
        """``communicator`` spans the expert-parallel group; required when ``ep_size > 1``."""
        if spec.ep_size > 1 and communicator is None:
            raise ValueError(f"{type(self).__name__}: ep_size={spec.ep_size} needs a communicator")
        self.platform = platform
        self.spec = spec
        self.communicator = communicator
        self.calls: Counter[str] = Counter()

    def weight_layout(self) -> MoEWeightLayout:
        """The expert weight layout this backend computes on (default: dense, no padding)."""
        return MoEWeightLayout()

    @abstractmethod
    def route(self, router_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``router_logits [T, E]`` (any float dtype; scored in fp32) ->
        ``(topk_weights fp32 [T, k], topk_ids int32 [T, k])`` on the same device.

        softmax: ``p = softmax(logits)``; sigmoid: ``p = sigmoid(logits)``. The ids are the k
        largest ``p`` (their order among the k is free); the weights are those ``p``, divided
        by their sum when ``spec.renormalize``, then multiplied by
        ``spec.routed_scaling_factor``."""

    @abstractmethod
    def dispatch(self, hidden: torch.Tensor, topk_weights: torch.Tensor,
                 topk_ids: torch.Tensor) -> Dispatched:
        """``hidden [T, H]``, ``topk_* [T, k]`` (global expert ids) -> the rows of this rank's
        experts (:class:`Dispatched`); row ``(t, j)`` carries ``hidden[t]`` and weight
        ``topk_weights[t, j]``. Under expert parallelism this exchanges rows over the
        communicator; on one rank it is a local sort with ``N = T * k``."""

    @abstractmethod
    def experts(self, dispatched: Dispatched, w13: torch.Tensor, w2: torch.Tensor,
                scales: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """``[N, H]`` in ``dispatched.hidden.dtype``: for each row of local expert ``e``,
        ``w2[e] @ (silu(gate) * up)`` with ``gate``/``up`` the two halves of ``w13[e] @ row``
        (weights in :meth:`weight_layout`). **Not** multiplied by the routing weight.

        ``scales``: ``None`` unless ``spec.quantization == "fp8"``, then ``(w13_scale fp32
        [E_local, 2 I_pad], w2_scale fp32 [E_local, H])`` with ``w13``/``w2`` in e4m3 (module
        docstring). The fp8 compute, row ``x`` of local expert ``e`` (activation dtype ``D``):

        1. ``(xq, xs) = quantize_fp8_rows(x)`` (per row: ``xs = max(amax|x|, 1e-12) / 448``,
           ``xq = e4m3(clamp(x / xs, +-448))``, round to nearest even);
        2. ``gu = (xq @ w13[e].T accumulated in fp32) * xs * w13_scale[e]`` (fp32, ``[2 I_pad]``);
        3. ``h = (silu(gu[:I_pad]) * gu[I_pad:])`` in fp32, **rounded to** ``D`` (the
           intermediate an engine keeps in the activation dtype between the two GEMMs);
        4. ``(hq, hs) = quantize_fp8_rows(h)``;
        5. ``y = (hq @ w2[e].T accumulated in fp32) * hs * w2_scale[e]``, returned in ``D``.

        ``anyware.kernels.reference.ReferenceMoEBackend`` is the oracle. Backends that do not
        list ``"fp8"`` in :attr:`quantizations` never get a quantised spec and may keep the
        three-argument signature."""

    @abstractmethod
    def combine(self, expert_out: torch.Tensor, dispatched: Dispatched) -> torch.Tensor:
        """``expert_out [N, H]`` (unweighted, from :meth:`experts`) -> ``[T, H]`` in its dtype:
        ``out[t] = sum_j topk_weights[t, j] * row(t, j)``, accumulated in fp32. This is the only
        stage that applies the routing weights; under expert parallelism it also returns rows
        to the ranks their tokens came from."""

    def forward(self, hidden: torch.Tensor, router_logits: torch.Tensor, w13: torch.Tensor,
                w2: torch.Tensor,
                scales: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """The whole layer, ``hidden [T, H]`` -> ``[T, H]``: route, dispatch, experts, combine.
        Fused backends override this with the same result (to their dtype's tolerance).
        ``scales``: as for :meth:`experts` (fp8 experts only; else None)."""
        self.calls["forward"] += 1
        weights, ids = self.route(router_logits)
        dispatched = self.dispatch(hidden, weights, ids)
        if scales is None:  # keep the three-argument call for backends without quantization
            return self.combine(self.experts(dispatched, w13, w2), dispatched)
        return self.combine(self.experts(dispatched, w13, w2, scales), dispatched)
