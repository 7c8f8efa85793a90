"""The Llama family: Llama 2/3/3.1 (llama3 rope scaling), Mistral, Qwen2/2.5 (QKV bias, tied
embeddings), Qwen3 (per-head q/k RMSNorm). One implementation; the config flags differ."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
from anyware.kernels.reference import rope_cos_sin
from anyware.model.config import ModelConfig
from anyware.model.context import ModelContext
from anyware.model.layers import RMSNorm
from anyware.model.parallel import (
    RowParallelLinear,
    VocabParallelEmbedding,
    column_parallel,
    kv_head_start,
    rank_heads,
)
from anyware.model.weights import CheckpointTensor
from anyware.plugin import AttentionLayer, ForwardBatch, KVCache
from torch import nn


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_id: int, ctx: ModelContext) -> None:
        super().__init__()
        tp, d = ctx.tp, cfg.head_dim
        h, hk = rank_heads(cfg.num_heads, cfg.num_kv_heads, tp.size)  # this rank's heads
        self.q_size, self.kv_size = h * d, hk * d
        kv_src = kv_head_start(cfg.num_kv_heads, tp) * d
        self.qkv_proj = column_parallel(
            cfg.hidden_size, {"q": (h * d, tp.rank * h * d), "k": (hk * d, kv_src),
                              "v": (hk * d, kv_src)}, cfg.attention_bias, ctx)
        self.o_proj = RowParallelLinear(cfg.num_heads * d, cfg.hidden_size, False, ctx)
        self.q_norm = RMSNorm(d, cfg.rms_norm_eps, ctx) if cfg.qk_norm else None
        self.k_norm = RMSNorm(d, cfg.rms_norm_eps, ctx) if cfg.qk_norm else None
        self.layer = AttentionLayer(layer_id, h, hk, d, d, d**-0.5, sliding_window=cfg.sliding_window)
        self.ctx = ctx

    def forward(self, positions, x, cos_sin, batch: ForwardBatch, cache: KVCache):
        t = x.shape[0]
        lay = self.layer
        q, k, v = self.qkv_proj(x).split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        q = q.reshape(t, lay.num_heads, lay.head_dim)
        k = k.reshape(t, lay.num_kv_heads, lay.head_dim)
        v = v.reshape(t, lay.num_kv_heads, lay.head_dim)
        if self.q_norm is not None:  # per-head q/k norm and rotary: one op (fusable)
            q, k = self.ctx.ops.norm_rotary(q, k, positions, cos_sin, True, self.q_norm.weight,
                                            self.k_norm.weight, self.q_norm.eps)
        else:
            q, k = self.ctx.ops.rotary(q, k, positions, cos_sin, True)
        out = self.ctx.attention.forward(q, k, v, lay, cache, batch)
        return self.o_proj(out.reshape(t, lay.num_heads * lay.v_head_dim))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig, ctx: ModelContext) -> None:
        super().__init__()
        tp = ctx.tp
        i = tp.split(cfg.intermediate_size, "intermediate_size")
        self.gate_up_proj = column_parallel(
            cfg.hidden_size, {"gate": (i, tp.rank * i), "up": (i, tp.rank * i)}, False, ctx)
        self.down_proj = RowParallelLinear(cfg.intermediate_size, cfg.hidden_size, False, ctx)
        self.ops = ctx.ops
        self.fp8_out = False  # SiLU-and-mul quantises for an fp8 down projection (model.quant)

    def forward(self, x):
        act = self.ops.silu_and_mul_fp8 if self.fp8_out else self.ops.silu_and_mul
        return self.down_proj(act(self.gate_up_proj(x)))

    def fp8_producers(self) -> list[tuple[nn.Module, nn.Module]]:
        """(producer, projection) pairs where the producer's output feeds only that
        projection (``anyware.model.quant.quantize_linears``)."""
        return [(self, self.down_proj)]


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_id: int, ctx: ModelContext, mlp: nn.Module) -> None:
        super().__init__()
        self.self_attn = Attention(cfg, layer_id, ctx)
        self.mlp = mlp
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, ctx)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, ctx)

    def fp8_producers(self) -> list[tuple[nn.Module, nn.Module]]:
        """(producer, projection) pairs where the producer's output feeds only that projection:
        the input norm and the QKV projection; the post-attention norm and a dense MLP's
        gate-up projection (a sparse block's router reads the normed rows in the model dtype)."""
        pairs = [(self.input_layernorm, self.self_attn.qkv_proj)]
        if isinstance(self.mlp, MLP):
            pairs.append((self.post_attention_layernorm, self.mlp.gate_up_proj))
        return pairs

    def forward(self, positions, x, residual, cos_sin, batch, cache):
        if residual is None:
            residual = x
            x = self.input_layernorm(x)
        else:
            x, residual = self.input_layernorm(x, residual)
        x = self.self_attn(positions, x, cos_sin, batch, cache)
        x, residual = self.post_attention_layernorm(x, residual)
        return self.mlp(x), residual


class LlamaForCausalLM(nn.Module):
    """``forward(batch, cache)`` returns fp32 logits for ``batch.logits_indices``."""

    # HF checkpoint name -> (our module path suffix, shard)
    SHARDS: ClassVar[dict[str, tuple[str, str]]] = {
        "q_proj": ("qkv_proj", "q"), "k_proj": ("qkv_proj", "k"), "v_proj": ("qkv_proj", "v"),
        "gate_proj": ("gate_up_proj", "gate"), "up_proj": ("gate_up_proj", "up"),
    }

    # feed-forward block classes by kind; "sparse" (MoE) is used where cfg.is_sparse_layer
    MLP_CLASSES: ClassVar[dict[str, type[nn.Module]]] = {}

    def __init__(self, cfg: ModelConfig, ctx: ModelContext) -> None:
        super().__init__()
        self.config = cfg
        self.ctx = ctx
        self.embed_tokens = VocabParallelEmbedding(cfg.vocab_size, cfg.hidden_size, ctx)
        self.layers = nn.ModuleList(DecoderLayer(cfg, i, ctx, self._mlp(cfg, i, ctx))
                                    for i in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, ctx)
        self.lm_head = (None if cfg.tie_word_embeddings
                        else VocabParallelEmbedding(cfg.vocab_size, cfg.hidden_size, ctx))
        self.register_buffer("cos_sin", torch.empty(0), persistent=False)
        self._aux_layers: tuple[int, ...] = ()
        self._aux_sink: Callable[[list[torch.Tensor], ForwardBatch], None] | None = None

    def capture_aux_hidden(self, layers: Sequence[int],
                           sink: Callable[[list[torch.Tensor], ForwardBatch], None]) -> None:
        """Opt in to hand the hidden states entering ``layers`` of every token of every forward to
        ``sink(states, batch)``, in ``layers`` order, inside the forward (so a captured device
        graph replays it). An EAGLE-3 head's features; off (and free) by default. Call before
        any graph capture."""
        if not all(0 <= i < len(self.layers) for i in layers):
            raise ValueError(f"aux layers {tuple(layers)} outside 0..{len(self.layers) - 1}")
        self._aux_layers, self._aux_sink = tuple(layers), sink

    def _mlp(self, cfg: ModelConfig, layer_id: int, ctx: ModelContext) -> nn.Module:
        sparse = self.MLP_CLASSES.get("sparse")
        if sparse is not None and cfg.is_sparse_layer(layer_id):
            return sparse(cfg, ctx)
        return MLP(cfg, ctx)

    def init_rope(self) -> None:
        cfg = self.config
        self.cos_sin = rope_cos_sin(cfg.head_dim, cfg.context_len, cfg.rope_theta, cfg.rope_scaling).to(
            self.embed_tokens.weight.device
        )

    def forward(self, batch: ForwardBatch, cache: KVCache) -> torch.Tensor:
        x = self.embed_tokens(batch.input_ids)
        residual = None
        aux, states = self._aux_layers, {}
        for i, layer in enumerate(self.layers):
            if aux and i in aux:
                states[i] = x if residual is None else x + residual
            x, residual = layer(batch.positions, x, residual, self.cos_sin, batch, cache)
        x, _ = self.norm(x, residual)
        if aux:
            self._aux_sink([states[i] for i in aux], batch)
        head = self.embed_tokens if self.lm_head is None else self.lm_head
        return head.logits(x[batch.logits_indices])

    def load_weight(self, name: str, tensor) -> str | None:
        """Load one checkpoint tensor (a tensor or a lazily read
        :class:`~anyware.model.weights.CheckpointTensor`: tensor-parallel layers read only their
        slice); returns the parameter it filled, None for names this model ignores."""
        name = name.removeprefix("model.")
        if name.startswith("lm_head.") and self.lm_head is None:
            return None  # tied: the embedding is the head
        if "rotary_emb.inv_freq" in name:
            return None
        parts = name.split(".")
        param = parts[-1]
        module_path, shard = parts[:-1], None
        if module_path and module_path[-1] in self.SHARDS:
            module_path[-1], shard = self.SHARDS[module_path[-1]]
        module = self.get_submodule(".".join(module_path))
        if hasattr(module, "load"):  # linear and embedding layers: sharded and fused loading
            module.load(param, tensor, shard)
        else:  # replicated (norms)
            target, tensor = getattr(module, param), CheckpointTensor.of(tensor).full()
            if target.shape != tensor.shape:
                raise ValueError(f"{name}: shape {tuple(tensor.shape)} != {tuple(target.shape)}")
            target.copy_(tensor)
        return ".".join([*module_path, param])
