"""Sparse mixture-of-experts blocks and the MoE decoders built on the Llama family:
Qwen3-MoE (``Qwen3MoeForCausalLM``: per-head q/k norm, ``norm_topk_prob``,
``decoder_sparse_step``/``mlp_only_layers``) and Mixtral (``MixtralForCausalLM``).

The block computes router logits with its ``gate`` and hands everything else to the
platform's :class:`~anyware.plugin.MoEBackend`; the expert weights are stored in the layout
that backend asks for, and checkpoint tensors (one per expert and projection, or the fused
``gate_up_proj``/``down_proj`` of transformers 5) are packed into it as they are read.

``--quantization fp8`` (``ModelContext.quantization``): each block asks the platform for a
backend of the fp8 spec (``MoESpec.quantization = "fp8"``, W8A8 e4m3 experts). The experts load
in the model dtype as usual and are quantised in place after loading (or random
initialisation), one layer at a time (:meth:`FusedExperts.finish`): ``w13``/``w2`` become e4m3
with fp32 per-output-row scales (``w13_scale``/``w2_scale``), passed to the backend as
``scales``. Like the dense layers, the load peak is the whole model in the model dtype. When no
MoE backend of the platform runs fp8 experts, the blocks take the model-dtype spec and the
experts stay unquantised; the model logs that once (:meth:`MoEForCausalLM.finish_loading`).
The router gate always stays in the model dtype.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from typing import ClassVar

import torch
from anyware.model.config import ModelConfig, ModelConfigError
from anyware.model.context import ModelContext, TensorParallel
from anyware.model.layers import Linear
from anyware.model.llama import LlamaForCausalLM
from anyware.model.weights import CheckpointTensor
from anyware.plugin import CapabilityError, MoESpec
from torch import nn

log = logging.getLogger(__name__)


def moe_spec(cfg: ModelConfig, dtype: torch.dtype, tp: TensorParallel | None = None) -> MoESpec:
    """The layer spec on one rank of ``tp``: all experts with ``1/size`` of each one's
    intermediate dimension (tensor parallel), or ``1/size`` of the experts whole (expert
    parallel)."""
    tp = tp or TensorParallel()
    ep = tp.expert_parallel and tp.size > 1
    inter = cfg.moe_intermediate_size
    return MoESpec(
        num_experts=cfg.num_experts, top_k=cfg.num_experts_per_tok, hidden_size=cfg.hidden_size,
        intermediate_size=inter if ep else tp.split(inter, "moe_intermediate_size"),
        dtype=dtype, scoring=cfg.router_scoring, renormalize=cfg.norm_topk_prob,
        ep_rank=tp.rank if ep else 0, ep_size=tp.size if ep else 1,
    )


class FusedExperts(nn.Module):
    """All local experts of one layer as ``w13``/``w2`` in the backend's weight layout."""

    def __init__(self, spec: MoESpec, layout, device_dtype: torch.dtype,
                 inter_start: int = 0) -> None:
        """``inter_start``: the first row of each expert's intermediate dimension this rank
        holds (tensor parallelism splits it; ``spec.intermediate_size`` rows are held)."""
        super().__init__()
        self.spec, self.layout, self.inter_start = spec, layout, inter_start
        dtype = layout.weight_dtype(spec) if layout.dtype else device_dtype
        self.w13 = nn.Parameter(torch.empty(layout.w13_shape(spec), dtype=dtype), requires_grad=False)
        self.w2 = nn.Parameter(torch.empty(layout.w2_shape(spec), dtype=dtype), requires_grad=False)
        self.w13_scale: torch.Tensor | None = None  # fp8 experts: fp32 [E_local, 2 I_pad]
        self.w2_scale: torch.Tensor | None = None  # fp8 experts: fp32 [E_local, H]
        self.loaded: set[tuple[int, str]] = set()

    def load_expert(self, expert: int, proj: str, tensor) -> None:
        """``proj``: ``gate``/``up``/``down`` (``[I, H]``, ``[I, H]``, ``[H, I]``) of global
        expert ``expert`` (a tensor or a :class:`CheckpointTensor`); experts of other
        expert-parallel ranks are skipped unread, and only this rank's intermediate rows are
        read."""
        local = expert - self.spec.first_local_expert
        if not 0 <= local < self.spec.num_local_experts:
            return
        tensor = CheckpointTensor.of(tensor)
        i, dim = self.spec.intermediate_size, 1 if proj == "down" else 0
        if tensor.shape[dim] == i and self.inter_start == 0:
            tensor = tensor.full()
        else:
            tensor = tensor.narrow(dim, self.inter_start, i)
        tensor = tensor.to(self.w13.dtype)
        if proj == "down":
            self.layout.load_w2(self.w2, local, tensor, self.spec)
        else:
            self.layout.load_w13(self.w13, local, proj, tensor, self.spec)
        self.loaded.add((local, proj))

    def load_stacked(self, name: str, tensor) -> None:
        """transformers 5's fused tensors: ``gate_up_proj [E, 2I, H]`` or ``down_proj [E, H, I]``
        (only local experts are read)."""
        tensor = CheckpointTensor.of(tensor)
        first, n = self.spec.first_local_expert, self.spec.num_local_experts
        for e in range(first, first + n):
            if name == "gate_up_proj":
                i = tensor.shape[1] // 2
                self.load_expert(e, "gate", tensor[e, :i])
                self.load_expert(e, "up", tensor[e, i:])
            else:
                self.load_expert(e, "down", tensor[e])

    def missing(self) -> list[str]:
        want = {(e, p) for e in range(self.spec.num_local_experts) for p in ("gate", "up", "down")}
        return [f"expert {e} {p}" for e, p in sorted(want - self.loaded)]

    def finish(self) -> None:
        """Zero the layout's padding (after loading or random initialisation); for an fp8 spec
        then quantise ``w13``/``w2`` in place to e4m3 with per-output-row scales
        (``anyware.kernels.reference.quantize_experts_fp8``, one expert at a time)."""
        self.layout.zero_padding(self.w13.data, self.w2.data, self.spec)
        if self.spec.quantization == "fp8" and self.w13_scale is None:
            from anyware.kernels.reference.moe import quantize_experts_fp8

            w13, w2, (s13, s2) = quantize_experts_fp8(self.w13.data, self.w2.data)
            self.w13 = nn.Parameter(w13, requires_grad=False)
            self.w2 = nn.Parameter(w2, requires_grad=False)
            self.w13_scale, self.w2_scale = s13, s2

    def scales(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(w13_scale, w2_scale)`` for fp8 experts, else None (``MoEBackend.forward``)."""
        return None if self.w13_scale is None else (self.w13_scale, self.w2_scale)


class SparseMoeBlock(nn.Module):
    """``x [T, H]`` -> router logits -> the platform's MoE backend -> ``[T, H]``."""

    def __init__(self, cfg: ModelConfig, ctx: ModelContext) -> None:
        super().__init__()
        if ctx.moe is None:
            raise ModelConfigError(
                f"{cfg.architecture} has MoE layers but the model context has no MoE backend "
                f"provider; build the model through the engine (ModelContext.moe)"
            )
        tp = self.tp = ctx.tp
        spec = moe_spec(cfg, ctx.dtype, tp)
        self.expert_parallel = spec.ep_size > 1
        #: why the experts stay in the model dtype under --quantization fp8 ('' otherwise)
        self.fp8_fallback = ""
        if ctx.quantization == "fp8":
            try:
                self.backend = ctx.moe(replace(spec, quantization="fp8"))
                spec = self.backend.spec
            except CapabilityError as exc:  # no backend runs fp8 experts: model dtype
                self.backend = ctx.moe(spec)
                self.fp8_fallback = str(exc)
        else:
            self.backend = ctx.moe(spec)
        self.gate = Linear(cfg.hidden_size, cfg.num_experts, False, ctx.dtype)
        start = 0 if self.expert_parallel else tp.rank * spec.intermediate_size
        self.experts = FusedExperts(spec, self.backend.weight_layout(), ctx.dtype, start)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.expert_parallel:
            return self._forward_expert_parallel(x)
        out = self._backend_forward(x, self.gate(x))
        return self.tp.all_reduce(out)  # tensor parallel: partial sums over intermediate slices

    def _backend_forward(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        scales = self.experts.scales()
        if scales is None:  # the four-argument call every backend takes
            return self.backend.forward(x, logits, self.experts.w13, self.experts.w2)
        return self.backend.forward(x, logits, self.experts.w13, self.experts.w2, scales=scales)

    def _forward_expert_parallel(self, x: torch.Tensor) -> torch.Tensor:
        """Every rank holds the same ``T`` tokens: rank ``r`` routes the ``r``-th chunk of them
        through the all-to-all dispatcher, and the chunks' outputs are all-gathered."""
        t, size = x.shape[0], self.tp.size
        chunk = -(-t // size)
        mine = x[self.tp.rank * chunk : (self.tp.rank + 1) * chunk]
        out = self._backend_forward(mine, self.gate(mine))
        if out.shape[0] < chunk:  # the last ranks' chunks may be short: pad to one shape
            out = torch.cat([out, out.new_zeros(chunk - out.shape[0], out.shape[1])])
        return self.tp.comm.all_gather(out)[:t]


# checkpoint expert names: "<layer prefix>.<block>.experts.<e>.<proj>.weight"
_PER_EXPERT = re.compile(r"^(layers\.\d+)\.(?:mlp|block_sparse_moe)\.experts\.(\d+)\.(\w+)\.weight$")
_STACKED = re.compile(r"^(layers\.\d+)\.mlp\.experts\.(gate_up_proj|down_proj)$")
_PROJ = {"gate_proj": "gate", "up_proj": "up", "down_proj": "down", "w1": "gate", "w3": "up",
         "w2": "down"}


class MoEForCausalLM(LlamaForCausalLM):
    """Llama-family decoder whose sparse layers (``cfg.is_sparse_layer``) are MoE blocks."""

    MLP_CLASSES: ClassVar[dict[str, type[nn.Module]]] = {"sparse": SparseMoeBlock}

    def load_weight(self, name: str, tensor: torch.Tensor) -> str | None:
        short = name.removeprefix("model.").replace(".block_sparse_moe.gate.", ".mlp.gate.")
        m = _PER_EXPERT.match(short)
        if m:
            proj = _PROJ.get(m.group(3))
            if proj is None:
                raise ModelConfigError(f"{name}: unknown expert projection {m.group(3)!r}")
            experts = self._experts(m.group(1), name)
            experts.load_expert(int(m.group(2)), proj, tensor)
            return f"{m.group(1)}.mlp.experts.{'w2' if proj == 'down' else 'w13'}"
        m = _STACKED.match(short)
        if m:
            experts = self._experts(m.group(1), name)
            experts.load_stacked(m.group(2), tensor)
            return f"{m.group(1)}.mlp.experts.{'w2' if m.group(2) == 'down_proj' else 'w13'}"
        return super().load_weight(short, tensor)

    def _experts(self, layer: str, name: str) -> FusedExperts:
        block = self.get_submodule(layer).mlp
        if not isinstance(block, SparseMoeBlock):
            raise ModelConfigError(f"{name}: layer {layer} is dense in this config (mlp_only_layers / "
                                   f"decoder_sparse_step) but the checkpoint has experts for it")
        return block.experts

    def finish_loading(self, from_checkpoint: bool) -> None:
        """Check every local expert got all three projections; zero layout padding; quantise
        fp8 experts (one layer at a time). Under ``--quantization fp8`` with no MoE backend
        that runs fp8 experts, log one warning for the model (not one per layer)."""
        fallback = None
        for name, module in self.named_modules():
            if isinstance(module, FusedExperts):
                if from_checkpoint and module.missing():
                    raise ModelConfigError(f"checkpoint lacks {name}: {module.missing()[:4]}")
                module.finish()
            elif isinstance(module, SparseMoeBlock) and module.fp8_fallback and fallback is None:
                fallback = module
        if fallback is not None:
            platform = getattr(fallback.backend.platform, "name", "?")
            log.warning("MoE experts stay in %s: no MoE backend of platform %s runs fp8 experts "
                        "(%s)", str(fallback.backend.spec.dtype).removeprefix("torch."),
                        platform, fallback.fp8_fallback)
