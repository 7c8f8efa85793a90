"""Turning scheduled batches into forwards: the model runner (the core's `StepProgram`)."""

from anyware.executor.model_runner import ModelRunner

__all__ = ["ModelRunner"]
