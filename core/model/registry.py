"""Architecture name (``config.json`` "architectures") -> model class."""

from __future__ import annotations

from anyware.model.config import ModelConfigError
from anyware.model.eagle3 import ARCHITECTURE as EAGLE3
from anyware.model.eagle3 import Eagle3Head
from anyware.model.llama import LlamaForCausalLM
from anyware.model.moe import MoEForCausalLM

_REGISTRY = {
    "LlamaForCausalLM": LlamaForCausalLM,
    EAGLE3: Eagle3Head,  # a draft head (--speculative-algorithm eagle3), not a model to serve
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
