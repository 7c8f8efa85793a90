"""`ModelConfig`: the architecture facts the engine needs, read from a Hugging Face
``config.json`` or a built-in preset (so benchmarks need no files)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from anyware.plugin.errors import AnywareError


class ModelConfigError(AnywareError):
    """The model directory or its config cannot be used."""


@dataclass(frozen=True)
class ModelConfig:
    architecture: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    qk_norm: bool = False
    sliding_window: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    bos_token_id: int | None = None
    torch_dtype: str | None = None
    # mixture of experts (num_experts 0: dense); see is_sparse_layer
    num_experts: int = 0
    num_experts_per_tok: int = 0
    moe_intermediate_size: int = 0
    norm_topk_prob: bool = True
    decoder_sparse_step: int = 1
    mlp_only_layers: tuple[int, ...] = ()
    router_scoring: str = "softmax"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def context_len(self) -> int:
        return self.max_position_embeddings

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    def is_sparse_layer(self, layer_id: int) -> bool:
        """Whether layer ``layer_id`` has an MoE block (else a dense MLP of
        ``intermediate_size``): Qwen-MoE's ``mlp_only_layers`` and ``decoder_sparse_step``."""
        return (self.is_moe and layer_id not in self.mlp_only_layers
                and (layer_id + 1) % self.decoder_sparse_step == 0)

    def param_count(self, active: bool = False) -> int:
        """Parameters (with ``active``: those one token reads, i.e. top-k experts only)."""
        h, i, v, layers = self.hidden_size, self.intermediate_size, self.vocab_size, self.num_layers
        qkv = h * (self.num_heads + 2 * self.num_kv_heads) * self.head_dim
        attn = qkv + self.num_heads * self.head_dim * h + 2 * h
        experts = self.num_experts_per_tok if active else self.num_experts
        sparse = h * self.num_experts + 3 * h * self.moe_intermediate_size * experts
        body = sum(attn + (sparse if self.is_sparse_layer(n) else 3 * h * i) for n in range(layers))
        return v * h * (1 if self.tie_word_embeddings else 2) + body + h

    @classmethod
    def from_hf_dict(cls, cfg: dict[str, Any]) -> ModelConfig:
        archs = cfg.get("architectures") or []
        if not archs:
            raise ModelConfigError("config.json has no 'architectures' entry")
        quant = cfg.get("quantization_config")
        if quant:  # its tensors are not in the model dtype: loading them as such is garbage
            method = quant.get("quant_method", "?") if isinstance(quant, dict) else "?"
            raise ModelConfigError(
                f"the checkpoint is already quantized (quantization_config: quant_method "
                f"{method!r}), which Anyware does not load; use the unquantized (bf16/fp16) "
                f"checkpoint, and --quantization fp8 to quantize it at load")
        heads = cfg["num_attention_heads"]
        hidden = cfg["hidden_size"]
        eos = cfg.get("eos_token_id")
        eos_ids = tuple(eos) if isinstance(eos, list) else (() if eos is None else (eos,))
        arch = archs[0]
        rope_scaling = cfg.get("rope_scaling")
        rope_theta = cfg.get("rope_theta")
        params = cfg.get("rope_parameters")  # transformers 5 layout
        if isinstance(params, dict):
            rope_theta = params.get("rope_theta", rope_theta)
            if params.get("rope_type", "default") not in ("default", None):
                rope_scaling = params
        window = cfg.get("sliding_window") if cfg.get("use_sliding_window", arch.startswith(("Mistral", "Mixtral"))) else None
        return cls(
            architecture=arch,
            hidden_size=hidden,
            num_layers=cfg["num_hidden_layers"],
            num_heads=heads,
            num_kv_heads=cfg.get("num_key_value_heads") or heads,
            head_dim=cfg.get("head_dim") or hidden // heads,
            intermediate_size=cfg["intermediate_size"],
            vocab_size=cfg["vocab_size"],
            rms_norm_eps=cfg.get("rms_norm_eps", 1e-6),
            rope_theta=float(rope_theta or 10000.0),
            rope_scaling=rope_scaling,
            max_position_embeddings=cfg.get("max_position_embeddings", 4096),
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            attention_bias=bool(cfg.get("attention_bias", arch.startswith("Qwen2"))),
            qk_norm=arch.startswith("Qwen3"),
            sliding_window=window,
            eos_token_ids=eos_ids,
            bos_token_id=cfg.get("bos_token_id"),
            torch_dtype=cfg.get("torch_dtype") or cfg.get("dtype"),
            **_moe_fields(arch, cfg),
            extra=cfg,
        )

    @classmethod
    def from_dir(cls, path: str | Path) -> ModelConfig:
        p = Path(path) / "config.json"
        if not p.is_file():
            raise ModelConfigError(
                f"{path} is not a model directory (no config.json). Give a Hugging Face model "
                f"directory or a preset: {', '.join(sorted(PRESETS))}"
            )
        return cls.from_hf_dict(json.loads(p.read_text()))


def _moe_fields(arch: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """MoE facts from a Hugging Face config: Mixtral (``num_local_experts``, experts of
    ``intermediate_size``, always renormalised) and Qwen-MoE (``num_experts`` or, as
    transformers 5 writes it, ``num_local_experts``; ``moe_intermediate_size``)."""
    experts = cfg.get("num_experts") or cfg.get("num_local_experts") or 0
    if not experts or arch not in MOE_ARCHITECTURES:
        return {}
    mixtral = arch.startswith("Mixtral")
    return dict(
        num_experts=int(experts),
        num_experts_per_tok=int(cfg.get("num_experts_per_tok", 2)),
        moe_intermediate_size=int(cfg["intermediate_size"] if mixtral else cfg["moe_intermediate_size"]),
        norm_topk_prob=True if mixtral else bool(cfg.get("norm_topk_prob", False)),
        decoder_sparse_step=int(cfg.get("decoder_sparse_step") or 1),
        mlp_only_layers=tuple(cfg.get("mlp_only_layers") or ()),
    )


MOE_ARCHITECTURES = ("MixtralForCausalLM", "Qwen3MoeForCausalLM")

_LLAMA3_SCALING = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
}

PRESETS: dict[str, ModelConfig] = {
    "llama-3.1-8b": ModelConfig(
        "LlamaForCausalLM", 4096, 32, 32, 8, 128, 14336, 128256, 1e-5, 500000.0,
        _LLAMA3_SCALING, 131072, eos_token_ids=(128001, 128008, 128009), bos_token_id=128000,
    ),
    "llama-3.2-1b": ModelConfig(
        "LlamaForCausalLM", 2048, 16, 32, 8, 64, 8192, 128256, 1e-5, 500000.0,
        {**_LLAMA3_SCALING, "factor": 32.0}, 131072, tie_word_embeddings=True,
        eos_token_ids=(128001,), bos_token_id=128000,
    ),
    "qwen2.5-0.5b": ModelConfig(
        "Qwen2ForCausalLM", 896, 24, 14, 2, 64, 4864, 151936, 1e-6, 1000000.0, None, 32768,
        tie_word_embeddings=True, attention_bias=True, eos_token_ids=(151645,),
    ),
    "qwen2.5-7b": ModelConfig(
        "Qwen2ForCausalLM", 3584, 28, 28, 4, 128, 18944, 152064, 1e-6, 1000000.0, None, 32768,
        attention_bias=True, eos_token_ids=(151645,),
    ),
    "qwen3-8b": ModelConfig(
        "Qwen3ForCausalLM", 4096, 36, 32, 8, 128, 12288, 151936, 1e-6, 1000000.0, None, 40960,
        qk_norm=True, eos_token_ids=(151645,),
    ),
    "qwen3-0.6b": ModelConfig(
        "Qwen3ForCausalLM", 1024, 28, 16, 8, 128, 3072, 151936, 1e-6, 1000000.0, None, 40960,
        tie_word_embeddings=True, qk_norm=True, eos_token_ids=(151645,),
    ),
    "qwen3-30b-a3b": ModelConfig(
        "Qwen3MoeForCausalLM", 2048, 48, 32, 4, 128, 6144, 151936, 1e-6, 1000000.0, None, 40960,
        qk_norm=True, eos_token_ids=(151645,), bos_token_id=151643, num_experts=128,
        num_experts_per_tok=8, moe_intermediate_size=768, norm_topk_prob=True,
    ),
    "mixtral-8x7b": ModelConfig(
        "MixtralForCausalLM", 4096, 32, 32, 8, 128, 14336, 32000, 1e-5, 1000000.0, None, 32768,
        eos_token_ids=(2,), bos_token_id=1, num_experts=8, num_experts_per_tok=2,
        moe_intermediate_size=14336, norm_topk_prob=True,
    ),
}


def with_context_len(cfg: ModelConfig, context_len: int | None) -> ModelConfig:
    if context_len is None:
        return cfg
    if context_len < 1:
        raise ModelConfigError("context length must be positive")
    return replace(cfg, max_position_embeddings=context_len)
