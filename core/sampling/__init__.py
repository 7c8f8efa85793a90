"""Turning logits into tokens: penalties, the platform's sampling op, logprobs."""

from anyware.sampling.sampler import Sampler

__all__ = ["Sampler"]
