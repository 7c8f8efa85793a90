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
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def context_len(self) -> int:
        return self.max_position_embeddings

    def param_count(self) -> int:
        h, i, v, layers = self.hidden_size, self.intermediate_size, self.vocab_size, self.num_layers
        qkv = h * (self.num_heads + 2 * self.num_kv_heads) * self.head_dim
        per_layer = qkv + self.num_heads * self.head_dim * h + 3 * h * i + 2 * h
        return v * h * (1 if self.tie_word_embeddings else 2) + layers * per_layer + h

    @classmethod
    def from_hf_dict(cls, cfg: dict[str, Any]) -> ModelConfig:
        archs = cfg.get("architectures") or []
        if not archs:
            raise ModelConfigError("config.json has no 'architectures' entry")
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
        window = cfg.get("sliding_window") if cfg.get("use_sliding_window", arch.startswith("Mistral")) else None
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
}


def with_context_len(cfg: ModelConfig, context_len: int | None) -> ModelConfig:
    if context_len is None:
        return cfg
    if context_len < 1:
        raise ModelConfigError("context length must be positive")
    return replace(cfg, max_position_embeddings=context_len)
