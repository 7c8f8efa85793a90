"""Sparse mixture-of-experts blocks and the MoE decoders built on the Llama family:
Qwen3-MoE (``Qwen3MoeForCausalLM``: per-head q/k norm, ``norm_topk_prob``,
``decoder_sparse_step``/``mlp_only_layers``) and Mixtral (``MixtralForCausalLM``).

The block computes router logits with its ``gate`` and hands everything else to the
platform's :class:`~anyware.plugin.MoEBackend`; the expert weights are stored in the layout
that backend asks for, and checkpoint tensors (one per expert and projection, or the fused
``gate_up_proj``/``down_proj`` of transformers 5) are packed into it as they are read.
"""

from __future__ import annotations

import re
from typing import ClassVar

import torch
from anyware.model.config import ModelConfig, ModelConfigError
from anyware.model.context import ModelContext
from anyware.model.layers import Linear
from anyware.model.llama import LlamaForCausalLM
from anyware.plugin import MoESpec
from torch import nn


def moe_spec(cfg: ModelConfig, dtype: torch.dtype) -> MoESpec:
    return MoESpec(
        num_experts=cfg.num_experts, top_k=cfg.num_experts_per_tok, hidden_size=cfg.hidden_size,
        intermediate_size=cfg.moe_intermediate_size, dtype=dtype, scoring=cfg.router_scoring,
        renormalize=cfg.norm_topk_prob,
    )


class FusedExperts(nn.Module):
    """All local experts of one layer as ``w13``/``w2`` in the backend's weight layout."""

    def __init__(self, spec: MoESpec, layout, device_dtype: torch.dtype) -> None:
        super().__init__()
        self.spec, self.layout = spec, layout
        dtype = layout.weight_dtype(spec) if layout.dtype else device_dtype
        self.w13 = nn.Parameter(torch.empty(layout.w13_shape(spec), dtype=dtype), requires_grad=False)
        self.w2 = nn.Parameter(torch.empty(layout.w2_shape(spec), dtype=dtype), requires_grad=False)
        self.loaded: set[tuple[int, str]] = set()

    def load_expert(self, expert: int, proj: str, tensor: torch.Tensor) -> None:
        """``proj``: ``gate``/``up``/``down`` (``[I, H]``, ``[I, H]``, ``[H, I]``) of global
        expert ``expert``; experts of other expert-parallel ranks are skipped."""
        local = expert - self.spec.first_local_expert
        if not 0 <= local < self.spec.num_local_experts:
            return
        tensor = tensor.to(self.w13.dtype)
        if proj == "down":
            self.layout.load_w2(self.w2, local, tensor, self.spec)
        else:
            self.layout.load_w13(self.w13, local, proj, tensor, self.spec)
        self.loaded.add((local, proj))

    def load_stacked(self, name: str, tensor: torch.Tensor) -> None:
        """transformers 5's fused tensors: ``gate_up_proj [E, 2I, H]`` or ``down_proj [E, H, I]``."""
        for e in range(tensor.shape[0]):
            if name == "gate_up_proj":
                i = self.spec.intermediate_size
                self.load_expert(e, "gate", tensor[e, :i])
                self.load_expert(e, "up", tensor[e, i:])
            else:
                self.load_expert(e, "down", tensor[e])

    def missing(self) -> list[str]:
        want = {(e, p) for e in range(self.spec.num_local_experts) for p in ("gate", "up", "down")}
        return [f"expert {e} {p}" for e, p in sorted(want - self.loaded)]

    def finish(self) -> None:
        """Zero the layout's padding (after loading or random initialisation)."""
        self.layout.zero_padding(self.w13.data, self.w2.data, self.spec)


class SparseMoeBlock(nn.Module):
    """``x [T, H]`` -> router logits -> the platform's MoE backend -> ``[T, H]``."""

    def __init__(self, cfg: ModelConfig, ctx: ModelContext) -> None:
        super().__init__()
        if ctx.moe is None:
            raise ModelConfigError(
                f"{cfg.architecture} has MoE layers but the model context has no MoE backend "
                f"provider; build the model through the engine (ModelContext.moe)"
            )
        spec = moe_spec(cfg, ctx.dtype)
        self.backend = ctx.moe(spec)
        self.gate = Linear(cfg.hidden_size, cfg.num_experts, False, ctx.dtype)
        self.experts = FusedExperts(spec, self.backend.weight_layout(), ctx.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backend.forward(x, self.gate(x), self.experts.w13, self.experts.w2)


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
        """Check every local expert got all three projections; zero layout padding."""
        for name, module in self.named_modules():
            if isinstance(module, FusedExperts):
                if from_checkpoint and module.missing():
                    raise ModelConfigError(f"checkpoint lacks {name}: {module.missing()[:4]}")
                module.finish()
