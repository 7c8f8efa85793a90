"""Architecture name (``config.json`` "architectures") -> model class."""

from __future__ import annotations

from anyware.model.config import ModelConfigError
from anyware.model.llama import LlamaForCausalLM
from anyware.model.moe import MoEForCausalLM

_REGISTRY = {
    "LlamaForCausalLM": LlamaForCausalLM,
    "MistralForCausalLM": LlamaForCausalLM,
    "MixtralForCausalLM": MoEForCausalLM,
    "Qwen3MoeForCausalLM": MoEForCausalLM,
    "Qwen2ForCausalLM": LlamaForCausalLM,
    "Qwen3ForCausalLM": LlamaForCausalLM,
}
SUPPORTED_ARCHITECTURES = tuple(sorted(_REGISTRY))


def model_class(architecture: str):
    try:
        return _REGISTRY[architecture]
    except KeyError:
        raise ModelConfigError(
            f"unsupported architecture {architecture!r}; supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
        ) from None
