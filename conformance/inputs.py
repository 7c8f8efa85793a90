"""Random inputs for conformance tests: drawn on the host from a seeded generator (so every
platform sees the same values), then moved to the platform's device."""

from __future__ import annotations

import torch

DTYPES = ("float32", "bfloat16", "float16")


def randn(gen: torch.Generator, shape, dtype, device, scale: float = 1.0) -> torch.Tensor:
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    return (torch.randn(shape, generator=gen) * scale).to(dtype).to(device)


def randperm(gen: torch.Generator, n: int) -> torch.Tensor:
    return torch.randperm(n, generator=gen)


def upcast(t: torch.Tensor) -> torch.Tensor:
    """The fp32 host copy the reference runs on."""
    return t.detach().to("cpu", torch.float32)
