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
from anyware.sampling.prompt_logprobs import PromptLogprobs


@dataclass
class SampleOutput:
    """One step's tokens, one per logit row.

    tokens: int64 ``[L]``. want: per row, the number of top logprobs asked for (``None``: no
    logprobs). chosen: fp32 ``[L]`` logprob of each token; top_values / top_ids: ``[L, k]``
    for the largest ``k`` asked for (absent when nobody asked). With verify rows in the step:
    spans: logit rows per sampling request (host list); counts: int64 ``[R]`` tokens each
    request keeps (its first ``counts[r]`` rows; decided on the device). Without: one row and
    one token per sampling request. prompt: the step's prompt logprobs, when some request
    asked for them.
    """

    tokens: torch.Tensor
    want: list[int | None]
    chosen: torch.Tensor | None = None
    top_values: torch.Tensor | None = None
    top_ids: torch.Tensor | None = None
    spans: list[int] | None = None
    counts: torch.Tensor | None = None
    prompt: PromptLogprobs | None = None

    def last_tokens(self) -> torch.Tensor:
        """Each sampling request's newest kept token (device int64 ``[R]``; no host sync)."""
        if self.counts is None:
            return self.tokens
        starts = [0]
        for s in self.spans[:-1]:
            starts.append(starts[-1] + s)
        first = torch.tensor(starts, dtype=torch.int64).to(self.tokens.device, non_blocking=True)
        return self.tokens[first + self.counts - 1]

    def to_host(self, copy: Callable[[torch.Tensor], torch.Tensor]) -> SampleOutput:
        """Start copying every tensor with ``copy`` (``Platform.copy_to_host``)."""
        out = replace(self, **{name: None if t is None else copy(t) for name, t in (
            ("tokens", self.tokens), ("chosen", self.chosen), ("top_values", self.top_values),
            ("top_ids", self.top_ids), ("counts", self.counts))})
        if self.prompt is not None:
            out.prompt = self.prompt.to_host(copy)
        return out

    def prompt_lists(self) -> dict[int, list[TokenLogprob]] | None:
        """Per batch index, the prompt logprobs computed this step (``None``: none)."""
        return None if self.prompt is None else self.prompt.lists()

    def lists(self) -> tuple[list[list[int]], list[list[TokenLogprob | None]] | None]:
        """Per sampling request, its kept tokens and their logprobs (``None`` entries where
        not asked), as Python values (reads the tensors)."""
        toks = self.tokens.tolist()
        if self.spans is None:  # one row per request
            starts, counts = range(len(toks)), [1] * len(toks)
            tokens = [[t] for t in toks]
        else:
            counts = self.counts.tolist()
            starts, s = [], 0
            for span in self.spans:
                starts.append(s)
                s += span
            tokens = [toks[a : a + c] for a, c in zip(starts, counts)]
        if self.chosen is None:
            return tokens, None
        chosen = self.chosen.tolist()
        top_v = self.top_values.tolist() if self.top_values is not None else None
        top_i = self.top_ids.tolist() if self.top_ids is not None else None
        rows: list[TokenLogprob | None] = []
        for b, w in enumerate(self.want):
            if w is None:
                rows.append(None)
                continue
            top = list(zip(top_i[b][:w], top_v[b][:w])) if w and top_i is not None else []
            rows.append(TokenLogprob(toks[b], chosen[b], top))
        return tokens, [rows[a : a + c] for a, c in zip(starts, counts)]
