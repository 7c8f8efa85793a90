"""`Sampler`: vectorised over the batch (no per-request Python loop on the device path).

Penalties are applied in torch (portable); the draw itself is the platform's
``KernelOps.sample``; an all-greedy batch takes the argmax directly.
"""

from __future__ import annotations

import torch
from anyware.engine.outputs import TokenLogprob
from anyware.engine.request import Request
from anyware.plugin import KernelOps, SamplingTensors


class Sampler:
    def __init__(self, ops: KernelOps, vocab_size: int, device: torch.device) -> None:
        self.ops = ops
        self.vocab_size = vocab_size
        self.device = device

    def _tensor(self, values, dtype) -> torch.Tensor:
        return torch.tensor(values, dtype=dtype).to(self.device, non_blocking=True)

    def _apply_penalties(self, logits: torch.Tensor, reqs: list[Request]) -> torch.Tensor:
        rows = [i for i, r in enumerate(reqs) if r.params.uses_penalties]
        if not rows:
            return logits
        v = logits.shape[-1]
        sub = logits[rows]
        out_counts = torch.zeros((len(rows), v), dtype=torch.float32, device=self.device)
        seen = torch.zeros((len(rows), v), dtype=torch.bool, device=self.device)
        for j, i in enumerate(rows):  # building the count rows is host work per request
            r = reqs[i]
            if r.output_ids:
                out_counts[j].index_add_(0, self._tensor(r.output_ids, torch.int64),
                                         torch.ones(len(r.output_ids), device=self.device))
            seen[j, self._tensor(r.all_ids, torch.int64)] = True
        rep = self._tensor([reqs[i].params.repetition_penalty for i in rows], torch.float32)[:, None]
        freq = self._tensor([reqs[i].params.frequency_penalty for i in rows], torch.float32)[:, None]
        pres = self._tensor([reqs[i].params.presence_penalty for i in rows], torch.float32)[:, None]
        sub = torch.where(seen, torch.where(sub > 0, sub / rep, sub * rep), sub)
        sub = sub - freq * out_counts - pres * (out_counts > 0).float()
        logits = logits.clone()
        logits[rows] = sub
        return logits

    def _logprobs(self, logits: torch.Tensor, tokens: torch.Tensor, reqs: list[Request]):
        want = [r.params.logprobs for r in reqs]
        if all(w is None for w in want):
            return None
        lp = torch.log_softmax(logits.float(), dim=-1)
        chosen = lp.gather(1, tokens[:, None]).squeeze(1).tolist()
        k = max(w or 0 for w in want)
        top_v, top_i = (lp.topk(k, dim=-1) if k else (None, None))
        top_v = top_v.tolist() if k else None
        top_i = top_i.tolist() if k else None
        toks = tokens.tolist()
        out = []
        for b, w in enumerate(want):
            if w is None:
                out.append(None)
                continue
            top = list(zip(top_i[b][:w], top_v[b][:w])) if w else []
            out.append(TokenLogprob(toks[b], chosen[b], top))
        return out

    @torch.inference_mode()
    def sample(self, logits: torch.Tensor, reqs: list[Request]) -> tuple[list[int], list | None]:
        """logits fp32 ``[B, V]`` for ``reqs`` (one row each) -> tokens and logprobs."""
        if logits.shape[0] == 0:
            return [], None
        raw = logits
        logits = self._apply_penalties(logits, reqs)
        params = [r.params for r in reqs]
        if all(p.greedy for p in params):
            tokens = logits.argmax(dim=-1)
        else:
            v = logits.shape[-1]
            st = SamplingTensors(
                temperatures=self._tensor([p.temperature or 1.0 for p in params], torch.float32),
                top_ks=self._tensor([p.top_k if p.top_k > 0 else v for p in params], torch.int32),
                top_ps=self._tensor([p.top_p for p in params], torch.float32),
                min_ps=self._tensor([p.min_p for p in params], torch.float32),
                seeds=self._tensor([r.seed for r in reqs], torch.int64),
                steps=self._tensor([len(r.output_ids) for r in reqs], torch.int64),
                greedy=self._tensor([p.greedy for p in params], torch.bool),
            )
            tokens = self.ops.sample(logits, st)
        return tokens.tolist(), self._logprobs(raw, tokens, reqs)
