"""`TritonMoEBackend`: MoE layers on the fused Triton kernel (CUDA; ROCm/XPU through Triton).

``forward`` is fused. Decode-sized batches (:func:`~anyware.kernels.triton.moe_small.use_small_path`)
take two launches per layer (:mod:`anyware.kernels.triton.moe_small`: gate-up GEMVs with the
routing recomputed in each program, then down + weighted combine); larger ones a routing kernel,
alignment (two launches), GEMM 1 with SiLU-mul, GEMM 2 with the routing weight and a sum-over-k
kernel: six launches. The separate stages run the same kernels (``experts``
on already-dispatched rows, unweighted) with the reference's sort dispatcher and combine, so
the conformance suite checks the kernel both ways.

fp8 experts (``MoESpec.quantization == "fp8"``, W8A8 e4m3 with per-row scales, the contract
of ``MoEBackend.experts``). Decode-sized batches keep the two-launch path: each program
quantises its token row (gate-up) or its intermediate row (down) itself, recomputing the row's
amax (a few thousand elements, from cache) — cheaper than another launch at batch 1. Larger
batches take the general path: per-row quantisation of the token rows
(:mod:`anyware.kernels.triton.quant`), GEMM 1 on e4m3 tiles with both scales and SiLU-mul in
its epilogue, the intermediate (model dtype) quantised per row, GEMM 2 on e4m3 tiles with both
scales and the routing weight in its epilogue: eight launches. Block sizes come from a
``dtype=float8_e4m3fn`` table when one is tuned, else the size heuristic.
"""

from __future__ import annotations

import torch
from anyware.kernels.reference.moe import local_combine, local_dispatch
from anyware.kernels.triton.moe import expert_gemms, fused_moe
from anyware.kernels.triton.moe_config import get_config, get_small_config
from anyware.kernels.triton.moe_route import route
from anyware.kernels.triton.moe_small import fused_moe_small, use_small_path
from anyware.kernels.triton.options import OPTION_PREFIX, apply_platform_options
from anyware.plugin import Dispatched, MoEBackend, MoEWeightLayout


class TritonMoEBackend(MoEBackend):
    name = "triton-fused"
    priority = 10
    quantizations = frozenset({"fp8"})

    def __init__(self, platform, spec, communicator=None) -> None:
        super().__init__(platform, spec, communicator)
        self._configs: dict[int, dict] = {}
        # the decode-sized path's two kernels launched with programmatic dependent launch
        # (pdl.py; platform option ``triton_pdl``, whose default the platform sets)
        self.pdl = False
        apply_platform_options(self, platform, OPTION_PREFIX, ("pdl",))

    def weight_layout(self) -> MoEWeightLayout:
        return MoEWeightLayout()

    def config(self, tokens: int) -> dict:
        """Block sizes for a batch of ``tokens`` (cached per token count)."""
        cfg = self._configs.get(tokens)
        if cfg is None:
            s = self.spec
            dtype = torch.float8_e4m3fn if s.quantization == "fp8" else s.dtype
            cfg = get_config(tokens, s.num_experts, s.intermediate_size, s.top_k, dtype)
            self._configs[tokens] = cfg
        return cfg

    def route(self, router_logits):
        self.calls["route"] += 1
        s = self.spec
        return route(router_logits, s.top_k, s.renormalize, s.scoring, s.routed_scaling_factor)

    def dispatch(self, hidden, topk_weights, topk_ids) -> Dispatched:
        self.calls["dispatch"] += 1
        return local_dispatch(hidden, topk_weights, topk_ids, self.spec.num_experts)

    def experts(self, dispatched: Dispatched, w13, w2, scales=None) -> torch.Tensor:
        self.calls["experts"] += 1
        n = dispatched.hidden.shape[0]
        e = torch.arange(dispatched.expert_counts.numel(), device=dispatched.hidden.device)
        row_expert = torch.repeat_interleave(e, dispatched.expert_counts, output_size=n)
        tokens = max(1, n // self.spec.top_k)
        return expert_gemms(dispatched.hidden, row_expert, 1, w13, w2, w13.shape[0],
                            self.config(tokens), scales=scales)

    def combine(self, expert_out, dispatched: Dispatched) -> torch.Tensor:
        self.calls["combine"] += 1
        return local_combine(expert_out, dispatched)

    def forward(self, hidden, router_logits, w13, w2, scales=None):
        self.calls["forward"] += 1
        s = self.spec
        if use_small_path(hidden.shape[0], s.num_experts, s.top_k):
            cfg = get_small_config(s.num_experts, s.intermediate_size, s.dtype)
            return fused_moe_small(hidden, router_logits, w13, w2, s.top_k, s.renormalize,
                                   s.scoring, s.routed_scaling_factor, cfg, scales, pdl=self.pdl)
        weights, ids = self.route(router_logits)
        return fused_moe(hidden, weights, ids, w13, w2, self.config(hidden.shape[0]), scales)
