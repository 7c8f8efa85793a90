"""Offline benchmark: submit a workload at once, time every token as it streams out.

Reports requests/s, output and total tok/s, TTFT and inter-token latency (median, p90, p99),
and the wall time. Prompts are random token ids (fixed seed), outputs fixed length
(ignore_eos). ``progress=True`` shows a progress bar of finished requests (tqdm, on stderr).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import asdict, dataclass, field

import torch
from anyware.engine.engine import Engine
from anyware.request.params import SamplingParams
from tqdm.auto import tqdm


@dataclass(frozen=True)
class Workload:
    num_prompts: int
    input_len: int
    output_len: int
    temperature: float = 0.0
    seed: int = 0
    shared_prefix_len: int = 0  # tokens shared by every prompt of a group (W4)
    group_size: int = 1

    def prompts(self, vocab_size: int) -> list[list[int]]:
        g = torch.Generator().manual_seed(self.seed)
        hi = min(vocab_size, 32000)
        out, prefix = [], []
        for i in range(self.num_prompts):
            if self.shared_prefix_len and i % self.group_size == 0:
                prefix = torch.randint(10, hi, (self.shared_prefix_len,), generator=g).tolist()
            body = torch.randint(10, hi, (self.input_len,), generator=g).tolist()
            out.append(prefix + body if self.shared_prefix_len else body)
        return out


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


@dataclass
class BenchResult:
    workload: Workload
    wall_s: float
    prompt_tokens: int
    output_tokens: int
    cached_tokens: int
    ttft_ms: list[float] = field(repr=False)
    itl_ms: list[float] = field(repr=False)
    extra: dict = field(default_factory=dict)

    @property
    def output_tok_s(self) -> float:
        return self.output_tokens / self.wall_s

    @property
    def request_s(self) -> float:
        return self.workload.num_prompts / self.wall_s

    @property
    def total_tok_s(self) -> float:
        return (self.output_tokens + self.prompt_tokens) / self.wall_s

    def summary(self) -> dict:
        return {
            "workload": asdict(self.workload),
            "wall_s": round(self.wall_s, 3),
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens,
            "request_s": round(self.request_s, 3),
            "output_tok_s": round(self.output_tok_s, 2),
            "total_tok_s": round(self.total_tok_s, 2),
            "ttft_ms_median": round(statistics.median(self.ttft_ms), 3) if self.ttft_ms else None,
            "ttft_ms_p90": round(_pct(self.ttft_ms, 0.9), 3),
            "ttft_ms_p99": round(_pct(self.ttft_ms, 0.99), 3),
            "itl_ms_median": round(statistics.median(self.itl_ms), 3) if self.itl_ms else None,
            "itl_ms_p90": round(_pct(self.itl_ms, 0.9), 3),
            "itl_ms_p99": round(_pct(self.itl_ms, 0.99), 3),
            **self.extra,
        }


async def _run(engine: Engine, prompts: list[list[int]], params: SamplingParams, bar):
    ttft, itl, cached = [], [], [0]
    out_tokens = [0]

    async def one(prompt):
        t0 = time.perf_counter()
        last = None
        async for delta in engine.generate_async(prompt, params):
            now = time.perf_counter()
            n = len(delta.outputs[0].token_ids)
            if delta.finished:
                cached[0] += delta.usage.cached_tokens
                bar.update(1)
            if not n:
                continue
            if last is None:
                ttft.append((now - t0) * 1e3)
                n -= 1
            elif n:
                itl.extend([(now - last) * 1e3 / n] * n)
            last = now
            out_tokens[0] += len(delta.outputs[0].token_ids)

    await asyncio.gather(*(one(p) for p in prompts))
    return ttft, itl, out_tokens[0], cached[0]


def run_offline(engine: Engine, wl: Workload, warmup: bool = True,
                progress: bool = False) -> BenchResult:
    prompts = wl.prompts(engine.model_config.vocab_size)
    params = SamplingParams(max_new_tokens=wl.output_len, temperature=wl.temperature,
                            ignore_eos=True, seed=wl.seed if wl.temperature else None)
    if warmup:  # compile / capture / allocate outside the timed region
        engine.generate(prompts[: min(4, len(prompts))],
                        SamplingParams(max_new_tokens=4, temperature=0, ignore_eos=True,
                                       cache_salt="warmup"))
    with tqdm(total=len(prompts), desc="Benchmark", unit="req", disable=not progress) as bar:
        t0 = time.perf_counter()
        ttft, itl, out_tokens, cached = asyncio.run(_run(engine, prompts, params, bar))
        wall = time.perf_counter() - t0
    return BenchResult(wl, wall, sum(map(len, prompts)), out_tokens, cached, ttft, itl)
