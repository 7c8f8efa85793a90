"""Anyware: one LLM serving engine, any hardware.

The public Python API is imported lazily so that ``import anyware`` (and the plugin contract)
stays cheap for plugins and the CLI.
"""

from anyware.version import __version__

_LAZY = {
    "Engine": "anyware.engine.engine",
    "SamplingParams": "anyware.request.params",
    "RequestOutput": "anyware.engine.outputs",
    "CompletionOutput": "anyware.engine.outputs",
    "TokenLogprob": "anyware.request.delta",
    "Usage": "anyware.engine.outputs",
    "EngineStats": "anyware.engine.outputs",
    "InvalidRequestError": "anyware.request.errors",
    "EngineDeadError": "anyware.engine.errors",
    "AnywareError": "anyware.plugin.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'anyware' has no attribute {name!r}")
