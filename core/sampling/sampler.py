"""`Sampler`: vectorised over the batch (no per-request device work on the hot path).

Penalties are applied in torch (portable); the draw itself is the platform's
``KernelOps.sample``; an all-greedy batch takes the argmax directly. Nothing here reads a
device tensor: the result stays on the device until the engine copies it out.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from anyware.plugin import KernelOps, SamplingTensors, StepSample
from anyware.request import Request, ScheduledBatch
from anyware.sampling.output import SampleOutput
from anyware.sampling.prompt_logprobs import prompt_logprobs
from anyware.sampling.rejection import rejection_chain, target_probs
from anyware.sampling.tree_verify import accept_tree
from anyware.sampling.verify import accept_chain

Resolver = Callable[[torch.Tensor], torch.Tensor]
NO_TOP_K = 2**31 - 1  # a top-k of at least the vocabulary disables top-k


class Sampler:
    def __init__(self, ops: KernelOps, vocab_size: int, device: torch.device,
                 rejection: bool = False) -> None:
        """``rejection``: verify rows of requests with temperature > 0 keep drafts by
        speculative rejection sampling (``sampling/rejection.py``) instead of by exact match
        with the target's seeded sample; greedy requests always match the argmax."""
        self.ops = ops
        self.vocab_size = vocab_size
        self.device = device
        self.rejection = rejection

    def _tensor(self, values, dtype) -> torch.Tensor:
        return torch.tensor(values, dtype=dtype).to(self.device, non_blocking=True)

    def _apply_penalties(self, logits: torch.Tensor, reqs: list[Request], steps: list[int],
                         resolve: Resolver | None, before: list[list[int]] | None) -> torch.Tensor:
        rows = [i for i, r in enumerate(reqs) if r.params.uses_penalties]
        if not rows:
            return logits
        # one flat (row, token) list for the output counts and one for "seen anywhere";
        # the newest output token may still be a placeholder, resolved on the device
        out_rows: list[int] = []
        out_toks: list[int] = []
        seen_rows: list[int] = []
        seen_toks: list[int] = []
        for j, i in enumerate(rows):
            r = reqs[i]
            outs = (r.output_ids[: steps[i] - len(before[i])] + before[i] if before
                    else r.output_ids[: steps[i]])
            out_rows += [j] * len(outs)
            out_toks += outs
            seen_rows += [j] * (len(r.prompt_ids) + len(outs))
            seen_toks += r.prompt_ids
            seen_toks += outs
        n_out = len(out_toks)
        packed = self._tensor(out_rows + seen_rows + out_toks + seen_toks, torch.int64)
        o_rows, s_rows, toks = packed.split([n_out, len(seen_rows), n_out + len(seen_toks)])
        if resolve is not None:
            toks = resolve(toks)
        o_toks, s_toks = toks.split([n_out, len(seen_toks)])
        v = logits.shape[-1]
        out_counts = torch.zeros((len(rows), v), dtype=torch.float32, device=self.device)
        out_counts.index_put_((o_rows, o_toks), torch.ones(n_out, device=self.device),
                              accumulate=True)
        seen = torch.zeros((len(rows), v), dtype=torch.bool, device=self.device)
        seen[s_rows, s_toks] = True
        rep = self._tensor([reqs[i].params.repetition_penalty for i in rows], torch.float32)[:, None]
        freq = self._tensor([reqs[i].params.frequency_penalty for i in rows], torch.float32)[:, None]
        pres = self._tensor([reqs[i].params.presence_penalty for i in rows], torch.float32)[:, None]
        row_idx = self._tensor(rows, torch.int64)
        sub = logits.index_select(0, row_idx)
        sub = torch.where(seen, torch.where(sub > 0, sub / rep, sub * rep), sub)
        sub = sub - freq * out_counts - pres * (out_counts > 0).float()
        return logits.index_copy(0, row_idx, sub)

    def step_params(self, batch: ScheduledBatch) -> SamplingTensors | None:
        """The sampling parameters of ``batch``'s logit rows (called before the batch is
        committed), when the step can be sampled
        inside the forward's program (``ExecutionStrategy.run_and_sample``): every logit row
        samples, and no request needs penalties, top logprobs or prompt logprobs, and there
        are no verify rows. ``None`` otherwise (the step goes through :meth:`sample_step`)."""
        if batch.has_verify or any(s is not None for s in batch.prompt_lp):
            return None
        if not all(batch.sampling_rows()):
            return None
        params = [r.params for r in batch.reqs]
        if any(p.uses_penalties or (p.logprobs or 0) > 0 for p in params):
            return None
        # before ``Scheduler.commit``: each request samples its next output index
        return self._params(batch.reqs, [len(r.output_ids) for r in batch.reqs], NO_TOP_K)

    def from_step(self, sample: StepSample, batch: ScheduledBatch) -> SampleOutput:
        """The :class:`SampleOutput` of a step sampled by ``run_and_sample``."""
        want = [r.params.logprobs for r in batch.reqs]
        out = SampleOutput(sample.tokens, want)
        if any(w is not None for w in want):
            out.chosen = sample.logprobs
        return out

    def _params(self, reqs: list[Request], steps: list[int], v: int) -> SamplingTensors:
        """``v``: the top-k that disables top-k (the logits' width, or more)."""
        params = [r.params for r in reqs]
        return SamplingTensors(
            temperatures=self._tensor([p.temperature or 1.0 for p in params], torch.float32),
            top_ks=self._tensor([p.top_k if p.top_k > 0 else v for p in params], torch.int32),
            top_ps=self._tensor([p.top_p for p in params], torch.float32),
            min_ps=self._tensor([p.min_p for p in params], torch.float32),
            seeds=self._tensor([r.seed for r in reqs], torch.int64),
            steps=self._tensor(steps, torch.int64),
            greedy=self._tensor([p.greedy for p in params], torch.bool),
        )

    @torch.inference_mode()
    def sample_step(self, logits: torch.Tensor, batch: ScheduledBatch,
                    resolve: Resolver | None = None) -> SampleOutput:
        """The tokens of a committed step: one per decode or finished prefill, and for a
        verify row of ``k`` drafts, the target's token at each of its ``k + 1`` positions, of
        which the longest prefix agreeing with the drafts plus one more is accepted (decided
        on the device: ``SampleOutput.counts``). Each position is sampled exactly as a
        one-token step at that position would be (same noise, same penalty history), so
        speculation never changes the output, greedy or seeded. With ``rejection``, the
        verify rows of requests with temperature > 0 keep drafts by rejection sampling
        instead: the same distribution, more drafts kept, a different seeded sample.

        Requests that asked for prompt logprobs have more logit rows (``batch.prompt_lp``):
        those rows give ``SampleOutput.prompt``, the rest are sampled as usual."""
        rows = batch.sampling_logit_rows()
        if rows is None:
            return self._sample_step(logits, batch, resolve)
        prompt = prompt_logprobs(logits, batch)
        out = self._sample_step(logits.index_select(0, self._tensor(rows, torch.int64)), batch,
                                resolve)
        out.prompt = prompt
        return out

    def _sample_step(self, logits: torch.Tensor, batch: ScheduledBatch,
                     resolve: Resolver | None) -> SampleOutput:
        if not batch.has_verify:  # one row per sampling request
            if all(batch.samples):
                return self.sample(logits, batch.reqs, batch.out_index, resolve)
            rows = [i for i, s in enumerate(batch.sampling_rows()) if s]
            return self.sample(logits, [batch.reqs[i] for i in rows],
                               [batch.out_index[i] for i in rows], resolve)
        reqs, steps, before, spans = [], [], [], []
        for req, samples, idx, drafts, tree in zip(batch.reqs, batch.sampling_rows(),
                                                   batch.out_index, batch.drafts, batch.trees):
            if not samples:
                continue
            spans.append(1 + len(drafts))
            reqs += [req] * (1 + len(drafts))
            if tree is None:
                steps += range(idx, idx + 1 + len(drafts))
                before += [drafts[:j] for j in range(1 + len(drafts))]
                continue
            # node i: the step at its depth, after the tokens of its root path
            paths: list[list[int]] = []
            for tok, par in zip(tree.tokens, tree.parents):
                paths.append((paths[par] if par >= 0 else []) + [tok])
            steps += [idx] + [idx + len(p) for p in paths]
            before += [[], *paths]
        rows = [(d, t) for d, t, s in zip(batch.drafts, batch.trees, batch.samples) if s]
        drafts = [d for d, _ in rows]
        processed = self._apply_penalties(logits, reqs, steps, resolve, before)
        out = self._draw(logits, processed, reqs, steps)
        out.spans = spans
        out.counts = accept_chain(out.tokens, spans,
                                  [d if t is None else [] for d, t in rows])
        if batch.has_tree:
            self._accept_trees(out, spans, [t for _, t in rows])
        if self.rejection:  # trees are greedy (the scheduler verifies chains otherwise)
            self._reject(out, logits, processed, reqs, steps, spans, drafts)
        return out

    def _accept_trees(self, out: SampleOutput, spans: list[int],
                      trees: list) -> None:
        """Greedy acceptance of the tree rows (``tree_verify.accept_tree``): their counts,
        and every per-row tensor reordered so each tree's kept tokens come first."""
        starts, s = [], 0
        for span in spans:
            starts.append(s)
            s += span
        which = [r for r, t in enumerate(trees) if t is not None]
        counts, order = accept_tree(out.tokens, [starts[r] for r in which],
                                    [trees[r] for r in which])
        out.counts = out.counts.index_copy(0, self._tensor(which, torch.int64), counts)
        out.tokens = out.tokens[order]
        for name in ("chosen", "top_values", "top_ids"):
            t = getattr(out, name)
            if t is not None:
                setattr(out, name, t[order])

    def _reject(self, out: SampleOutput, raw: torch.Tensor, processed: torch.Tensor,
                reqs: list[Request], steps: list[int], spans: list[int],
                drafts: list[list[int]]) -> None:
        """Replace the tokens and counts of the non-greedy verify requests by rejection
        sampling (greedy ones keep the exact-match result)."""
        rows, sel, start = [], [], 0
        for r, (span, d) in enumerate(zip(spans, drafts)):
            if d and not reqs[start].params.greedy:
                rows.append(r)
                sel += range(start, start + span)
            start += span
        if not rows:
            return
        params = [reqs[i].params for i in sel]
        v = processed.shape[-1]
        idx = self._tensor(sel, torch.int64)
        probs = target_probs(
            processed.index_select(0, idx),
            self._tensor([p.temperature for p in params], torch.float32),
            self._tensor([p.top_k if p.top_k > 0 else v for p in params], torch.int64),
            self._tensor([p.top_p for p in params], torch.float32),
            self._tensor([p.min_p for p in params], torch.float32))
        tokens, counts = rejection_chain(
            probs, self._tensor([reqs[i].seed for i in sel], torch.int64),
            self._tensor([steps[i] for i in sel], torch.int64),
            [spans[r] for r in rows], [drafts[r] for r in rows])
        out.tokens = out.tokens.index_copy(0, idx, tokens)
        out.counts = out.counts.index_copy(0, self._tensor(rows, torch.int64), counts)
        if out.chosen is not None:
            lp = torch.log_softmax(raw.float(), dim=-1)
            out.chosen = lp.gather(1, out.tokens[:, None]).squeeze(1)

    @torch.inference_mode()
    def sample(self, logits: torch.Tensor, reqs: list[Request], steps: list[int] | None = None,
               resolve: Resolver | None = None,
               before: list[list[int]] | None = None) -> SampleOutput:
        """logits fp32 ``[L, V]``, one row per entry of ``reqs`` -> a token per row, still on
        the device.

        ``steps[i]``: the index in ``reqs[i].output_ids`` of the token being sampled (default:
        the end of the list); it seeds the request's noise and bounds the tokens penalties
        count. ``before[i]``: tokens taken to precede that position instead of the end of
        ``output_ids[:steps[i]]`` (a verify row's drafts before it). ``resolve`` maps
        placeholder token ids to their values on the device."""
        if steps is None:
            steps = [len(r.output_ids) for r in reqs]
        if logits.shape[0] == 0:
            return SampleOutput(torch.zeros(0, dtype=torch.int64, device=logits.device),
                                [r.params.logprobs for r in reqs])
        return self._draw(logits, self._apply_penalties(logits, reqs, steps, resolve, before),
                          reqs, steps)

    def _draw(self, raw: torch.Tensor, logits: torch.Tensor, reqs: list[Request],
              steps: list[int]) -> SampleOutput:
        """A token per row from penalised ``logits``; logprobs from ``raw``."""
        params = [r.params for r in reqs]
        want = [p.logprobs for p in params]
        if all([p.greedy for p in params]):
            tokens = logits.argmax(dim=-1)
        else:
            tokens = self.ops.sample(logits, self._params(reqs, steps, logits.shape[-1]))
        out = SampleOutput(tokens.to(torch.int64), want)
        if want.count(None) != len(want):
            lp = torch.log_softmax(raw.float(), dim=-1)
            out.chosen = lp.gather(1, out.tokens[:, None]).squeeze(1)
            k = max(w or 0 for w in want)
            if k:
                out.top_values, out.top_ids = lp.topk(k, dim=-1)
        return out
