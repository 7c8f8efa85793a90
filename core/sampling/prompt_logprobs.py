"""Prompt logprobs: the log-probability of each prompt token given the tokens before it,
computed from a prefill chunk's logit rows (only for requests that ask for them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from anyware.request import ScheduledBatch, TokenLogprob


@dataclass
class PromptLogprobs:
    """One step's prompt logprobs, on the device or (after ``to_host``) on the host.

    chosen: fp32 ``[N]``, the logprob of each prompt token at the row of the position before
    it; top_values / top_ids: ``[N, k]`` for the largest ``k`` asked for (absent when every
    request asks for 0). token_ids: the ``N`` prompt tokens (host). segments: per request
    with rows, ``(batch index, rows, top k)`` in row order.
    """

    chosen: torch.Tensor
    token_ids: list[int]
    segments: list[tuple[int, int, int]]
    top_values: torch.Tensor | None = None
    top_ids: torch.Tensor | None = None

    def to_host(self, copy: Callable[[torch.Tensor], torch.Tensor]) -> PromptLogprobs:
        """Start copying the tensors with ``copy`` (``Platform.copy_to_host``)."""
        return replace(self, chosen=copy(self.chosen),
                       top_values=None if self.top_values is None else copy(self.top_values),
                       top_ids=None if self.top_ids is None else copy(self.top_ids))

    def lists(self) -> dict[int, list[TokenLogprob]]:
        """Per batch index, the ``TokenLogprob`` of each prompt token computed this step."""
        chosen = self.chosen.tolist()
        top_v = self.top_values.tolist() if self.top_values is not None else None
        top_i = self.top_ids.tolist() if self.top_ids is not None else None
        out: dict[int, list[TokenLogprob]] = {}
        row = 0
        for index, n, k in self.segments:
            out[index] = [
                TokenLogprob(self.token_ids[r], chosen[r],
                             list(zip(top_i[r][:k], top_v[r][:k])) if k and top_i else [])
                for r in range(row, row + n)]
            row += n
        return out


def prompt_logprobs(logits: torch.Tensor, batch: ScheduledBatch) -> PromptLogprobs:
    """The prompt logprobs of ``batch`` (whose ``prompt_lp`` names some spans) from its logit
    rows ``logits`` (fp32 ``[L, V]``, laid out as ``batch.logit_counts()``). Raw logprobs:
    the log-softmax of the model's logits, before penalties or temperature. No host sync."""
    targets: list[int] = []
    segments: list[tuple[int, int, int]] = []
    for i, (req, span) in enumerate(zip(batch.reqs, batch.prompt_lp)):
        if span is None:
            continue
        start, end = span
        targets.extend(req.prompt_ids[start + 1 : end + 1])
        segments.append((i, end - start, req.params.prompt_logprobs or 0))
    rows = batch.prompt_logit_rows()
    device = logits.device
    packed = torch.tensor(rows + targets, dtype=torch.int64).to(device, non_blocking=True)
    row_t, tok_t = packed.split([len(rows), len(targets)])
    x = logits.index_select(0, row_t).float()
    lse = torch.logsumexp(x, dim=-1)
    out = PromptLogprobs(x.gather(1, tok_t[:, None]).squeeze(1) - lse, targets, segments)
    k = max(s[2] for s in segments)
    if k:
        values, out.top_ids = x.topk(min(k, x.shape[-1]), dim=-1)
        out.top_values = values - lse[:, None]
    return out
