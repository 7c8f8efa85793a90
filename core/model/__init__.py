"""Model definitions, written only against the plugin's op interfaces, and their loading."""

from anyware.model.config import PRESETS, ModelConfig
from anyware.model.registry import SUPPORTED_ARCHITECTURES, model_class

__all__ = ["PRESETS", "SUPPORTED_ARCHITECTURES", "ModelConfig", "model_class"]
