"""`Eagle3Head`: the EAGLE-3 draft head (architecture ``LlamaForCausalLMEagle3``), loaded from
the checkpoint layout SGLang and vLLM accept (docs/speculative.md lists the keys).

One decoder layer whose attention reads ``2H`` features per token: the RMS-normed embedding
of the token (``midlayer.input_layernorm``) next to the RMS-normed hidden feature
(``midlayer.hidden_norm``); the residual stream starts at the hidden feature. The feature of
a position is either the target's: ``fc`` applied to the concatenation of the target's
hidden states entering three of its layers (low / mid / high), or the head's own output
(the residual stream before ``norm``) of the previous position, for the positions it drafts
itself. ``norm`` then ``lm_head`` give logits over the draft vocabulary, whose token ``i`` is
the target's token ``i + d2t[i]``.

Features live in a tensor addressed like the KV cache, by slot (``page * page_size +
offset``), that the drafter owns (:meth:`bind`): the head reads the feature of each token at
its ``out_slots``, so one batch mixes target features and its own without a mode. After a
forward, the head's output hidden state of each logit row is in ``hidden_out[:rows]`` (a
persistent buffer, so a replayed device graph fills it too) for the drafter to scatter to
the next position's slot.

The token embedding is the checkpoint's ``embed_tokens.weight`` when it has one, else the
target's (:meth:`bind`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from anyware.kernels.reference import rope_cos_sin
from anyware.model.config import ModelConfig, ModelConfigError
from anyware.model.context import ModelContext
from anyware.model.layers import Linear, RMSNorm, Shard
from anyware.model.llama import MLP, LlamaForCausalLM
from anyware.model.weights import CheckpointTensor
from anyware.plugin import AttentionLayer, ForwardBatch, KVCache
from torch import nn

ARCHITECTURE = "LlamaForCausalLMEagle3"


def eagle3_fields(cfg: ModelConfig) -> tuple[int, int]:
    """``(draft_vocab_size, target_hidden_size)`` of an EAGLE-3 head config."""
    extra = cfg.extra
    draft_vocab = extra.get("draft_vocab_size") or cfg.vocab_size
    target_hidden = extra.get("target_hidden_size") or cfg.hidden_size
    return int(draft_vocab), int(target_hidden)


def aux_layers(head: ModelConfig, target_layers: int) -> tuple[int, int, int]:
    """The target layers whose *input* hidden state (the residual stream entering the layer)
    the head reads: ``eagle_config.eagle_aux_hidden_state_layer_ids`` (layer *outputs*, so each plus
    one) when the head's config names them, else ``(2, L // 2, L - 3)`` as EAGLE-3 trains."""
    ids = (head.extra.get("eagle_config") or {}).get("eagle_aux_hidden_state_layer_ids")
    if ids is not None:
        layers = tuple(int(i) + 1 for i in ids)
    else:
        layers = (2, target_layers // 2, target_layers - 3)
    if len(layers) != 3 or not all(0 <= i < target_layers for i in layers):
        raise ModelConfigError(
            f"EAGLE-3 head reads target layers {layers}, the target has {target_layers}: set "
            "eagle_config.eagle_aux_hidden_state_layer_ids in the head's config.json to three "
            f"layer ids in -1..{target_layers - 2} (the output of layer i is the input of i + 1; "
            "-1: the embeddings)")
    return layers  # type: ignore[return-value]


class _Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, ctx: ModelContext) -> None:
        super().__init__()
        h, hk, d = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        self.q_size, self.kv_size = h * d, hk * d
        self.qkv_proj = Linear(
            2 * cfg.hidden_size, (h + 2 * hk) * d, cfg.attention_bias, ctx.dtype,
            shards={"q": Shard(0, h * d), "k": Shard(h * d, hk * d),
                    "v": Shard((h + hk) * d, hk * d)})
        self.o_proj = Linear(h * d, cfg.hidden_size, False, ctx.dtype)
        self.layer = AttentionLayer(0, h, hk, d, d, d**-0.5)
        self.ctx = ctx

    def forward(self, positions, x, cos_sin, batch: ForwardBatch, cache: KVCache):
        t, lay = x.shape[0], self.layer
        q, k, v = self.qkv_proj(x).split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        q = q.reshape(t, lay.num_heads, lay.head_dim)
        k = k.reshape(t, lay.num_kv_heads, lay.head_dim)
        v = v.reshape(t, lay.num_kv_heads, lay.head_dim)
        q, k = self.ctx.ops.rotary(q, k, positions, cos_sin, True)
        out = self.ctx.attention.forward(q, k, v, lay, cache, batch)
        return self.o_proj(out.reshape(t, lay.num_heads * lay.v_head_dim))


class _MidLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, ctx: ModelContext) -> None:
        super().__init__()
        self.self_attn = _Attention(cfg, ctx)
        self.mlp = MLP(cfg, ctx)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, ctx)
        self.hidden_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, ctx)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, ctx)

    def forward(self, positions, embeds, hidden, cos_sin, batch, cache):
        x = torch.cat([self.input_layernorm(embeds), self.hidden_norm(hidden)], dim=-1)
        x = self.self_attn(positions, x, cos_sin, batch, cache)
        x, residual = self.post_attention_layernorm(x, hidden)
        return self.mlp(x), residual


class Eagle3Head(nn.Module):
    """``forward(batch, cache)`` returns fp32 logits over the draft vocabulary for
    ``batch.logits_indices`` and leaves those rows' output hidden states in
    ``hidden_out``; :meth:`bind` must have run first."""

    SHARDS = LlamaForCausalLM.SHARDS

    def __init__(self, cfg: ModelConfig, ctx: ModelContext) -> None:
        super().__init__()
        if cfg.num_layers != 1:
            raise ModelConfigError(
                f"EAGLE-3 head with {cfg.num_layers} layers: only one-layer heads (the "
                "published EAGLE-3 layout) are supported")
        self.config, self.ctx = cfg, ctx
        self.draft_vocab, self.target_hidden = eagle3_fields(cfg)
        h = cfg.hidden_size
        self.fc = Linear(3 * self.target_hidden, h, bool(cfg.extra.get("bias", False)), ctx.dtype)
        self.midlayer = _MidLayer(cfg, ctx)
        self.norm = RMSNorm(h, cfg.rms_norm_eps, ctx)
        self.lm_head = Linear(h, self.draft_vocab, False, ctx.dtype)
        # draft token i is target token hot_ids[i] (checkpoint "d2t": hot_ids[i] - i)
        self.register_buffer("hot_ids", torch.arange(self.draft_vocab), persistent=False)
        self.register_buffer("cos_sin", torch.empty(0), persistent=False)
        self._d2t: torch.Tensor | None = None
        self.embed: torch.Tensor | None = None  # the checkpoint's, or the target's (bind)
        self.features: torch.Tensor | None = None
        self.hidden_out: torch.Tensor | None = None

    # ------------------------------------------------------------ loading
    def load_weight(self, name: str, tensor) -> str | None:
        """One checkpoint tensor (a tensor or a lazy ``CheckpointTensor``: the head is one
        layer on one rank, so each is read whole)."""
        tensor = CheckpointTensor.of(tensor).full()
        name = name.removeprefix("model.")
        if name == "d2t":
            if tensor.shape != (self.draft_vocab,):
                raise ModelConfigError(f"d2t: shape {tuple(tensor.shape)}, expected "
                                       f"({self.draft_vocab},) (draft_vocab_size)")
            self._d2t = tensor.to(torch.int64)
            return None
        if name == "t2d" or "rotary_emb" in name:
            return None
        if name == "embed_tokens.weight":
            self.embed = tensor.to(self.ctx.device, self.ctx.dtype)
            return None
        for alias in ("midlayers.0.", "layers.0."):  # other exporters' names of the layer
            if name.startswith(alias):
                name = "midlayer." + name[len(alias):]
        parts = name.split(".")
        param, module_path, shard = parts[-1], parts[:-1], None
        if module_path and module_path[-1] in self.SHARDS:
            module_path[-1], shard = self.SHARDS[module_path[-1]]
        try:
            module = self.get_submodule(".".join(module_path))
        except AttributeError:
            raise ModelConfigError(f"EAGLE-3 head checkpoint has an unknown tensor {name!r}") from None
        if isinstance(module, Linear):
            module.load(param, tensor, shard)
        else:
            target = getattr(module, param)
            if target.shape != tensor.shape:
                raise ValueError(f"{name}: shape {tuple(tensor.shape)} != {tuple(target.shape)}")
            target.copy_(tensor)
        return ".".join([*module_path, param])

    def finish_loading(self, from_checkpoint: bool) -> None:
        """Fill the draft -> target token map (identity without a ``d2t``: random weights
        draft the first ``draft_vocab_size`` tokens)."""
        ids = torch.arange(self.draft_vocab, device=self.fc.weight.device)
        if self._d2t is not None:
            ids = ids + self._d2t.to(ids.device)
        elif from_checkpoint and self.draft_vocab != self.config.vocab_size:
            raise ModelConfigError(
                f"EAGLE-3 head with draft_vocab_size {self.draft_vocab} != vocab_size "
                f"{self.config.vocab_size} needs a d2t tensor (draft -> target token offsets)")
        if int(ids.min()) < 0 or int(ids.max()) >= self.config.vocab_size:
            raise ModelConfigError("EAGLE-3 head's d2t maps draft tokens outside the target's "
                                   f"vocabulary of {self.config.vocab_size}")
        self.hot_ids = ids

    def init_rope(self) -> None:
        cfg = self.config
        self.cos_sin = rope_cos_sin(cfg.head_dim, cfg.context_len, cfg.rope_theta,
                                    cfg.rope_scaling).to(self.fc.weight.device)

    def bind(self, features: torch.Tensor, target_embed: torch.Tensor, max_rows: int) -> None:
        """Before the first forward (and before any graph capture): the slot-addressed feature
        tensor ``[slots, hidden]``, the target's embedding (used when the checkpoint has
        none) and the most logit rows a forward has (the size of ``hidden_out``)."""
        if self.embed is None:
            if target_embed.shape[1] != self.config.hidden_size:
                raise ModelConfigError(
                    "EAGLE-3 head has no embed_tokens and its hidden size "
                    f"{self.config.hidden_size} differs from the target's "
                    f"{target_embed.shape[1]}: the head cannot share the target's embedding")
            self.embed = target_embed
        self.features = features
        self.hidden_out = torch.empty((max_rows, self.config.hidden_size),
                                      dtype=features.dtype, device=features.device)

    # ------------------------------------------------------------ compute
    def project(self, aux: Sequence[torch.Tensor]) -> torch.Tensor:
        """The head's feature for target hidden states ``aux`` (three ``[T, H_target]``)."""
        return self.fc(torch.cat(list(aux), dim=-1))

    def forward(self, batch: ForwardBatch, cache: KVCache) -> torch.Tensor:
        embeds = torch.nn.functional.embedding(batch.input_ids, self.embed)
        hidden = self.features[batch.out_slots]
        x, residual = self.midlayer(batch.positions, embeds, hidden, self.cos_sin, batch, cache)
        x, residual = self.norm(x, residual)
        idx = batch.logits_indices
        self.hidden_out[: idx.shape[0]].copy_(residual[idx])
        return torch.nn.functional.linear(x[idx], self.lm_head.weight).float()
