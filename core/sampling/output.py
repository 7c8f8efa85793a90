"""`SampleOutput`: one step's sampled tokens (and logprobs), on the device or on the host.

The sampler returns it on the device; the engine starts its copy to the host with
``to_host`` and reads it with ``lists`` once the step's event has completed, so the host never
waits for the device in the middle of a step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from anyware.request.delta import TokenLogprob


@dataclass
class SampleOutput:
    """tokens: int64 ``[B]``. want: per row, the number of top logprobs asked for (``None``:
    no logprobs). chosen: fp32 ``[B]`` logprob of each token; top_values / top_ids:
    ``[B, k]`` for the largest ``k`` asked for (absent when nobody asked)."""

    tokens: torch.Tensor
    want: list[int | None]
    chosen: torch.Tensor | None = None
    top_values: torch.Tensor | None = None
    top_ids: torch.Tensor | None = None

    def to_host(self, copy: Callable[[torch.Tensor], torch.Tensor]) -> SampleOutput:
        """Start copying every tensor with ``copy`` (``Platform.copy_to_host``)."""
        return replace(self, **{name: None if t is None else copy(t) for name, t in (
            ("tokens", self.tokens), ("chosen", self.chosen), ("top_values", self.top_values),
            ("top_ids", self.top_ids))})

    def lists(self) -> tuple[list[int], list[TokenLogprob | None] | None]:
        """Tokens and per-row logprobs as Python values (reads the tensors)."""
        toks = self.tokens.tolist()
        if self.chosen is None:
            return toks, None
        chosen = self.chosen.tolist()
        top_v = self.top_values.tolist() if self.top_values is not None else None
        top_i = self.top_ids.tolist() if self.top_ids is not None else None
        out: list[TokenLogprob | None] = []
        for b, w in enumerate(self.want):
            if w is None:
                out.append(None)
                continue
            top = list(zip(top_i[b][:w], top_v[b][:w])) if w and top_i is not None else []
            out.append(TokenLogprob(toks[b], chosen[b], top))
        return toks, out
