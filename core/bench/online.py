"""Online benchmark: drive a running server over HTTP with streaming requests, as SGLang's
``bench_serving`` and vLLM's ``benchmark_serving`` do, and report request throughput, token
throughput and TTFT / TPOT / ITL / end-to-end latency percentiles.

Requests arrive at a fixed rate (a Poisson process, ``request_rate`` per second) or all at once
(``inf``), optionally capped at ``max_concurrency`` in flight. Lengths are random (uniform in
``[range_ratio * len, len]``) or taken from a ShareGPT-format JSON file (a local file; nothing is
downloaded). Prompts are token ids, so a model without a tokenizer (a shape preset) is measured
the same way; with ShareGPT and a server that has a tokenizer, the conversation's own tokens are
sent (tokenized by the server's ``/tokenize``).

Endpoints: ``generate`` (the native ``/generate``: every chunk carries its ``output_ids``, so
each token is timed) and ``completions`` (``/v1/completions`` with a token-id prompt; a chunk's
tokens are known only in total, from the final usage block, so ITL is per chunk)."""

from __future__ import annotations

import asyncio
import json
import math
import random
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

ENDPOINTS = ("generate", "completions")
DATASETS = ("random", "sharegpt")


@dataclass(frozen=True)
class ServeWorkload:
    num_prompts: int = 100
    input_len: int = 256
    output_len: int = 128
    range_ratio: float = 1.0  # lengths uniform in [range_ratio * len, len]
    dataset: str = "random"
    dataset_path: str | None = None
    request_rate: float = math.inf  # requests/s (Poisson arrivals); inf: all at once
    max_concurrency: int | None = None
    endpoint: str = "generate"
    temperature: float = 0.0
    seed: int = 0

    def check(self) -> None:
        if self.num_prompts < 1:
            raise ValueError("--num-prompts must be >= 1")
        if self.dataset not in DATASETS:
            raise ValueError(f"--dataset must be one of {DATASETS}")
        if self.dataset == "sharegpt" and not self.dataset_path:
            raise ValueError("--dataset sharegpt needs --dataset-path FILE (a local ShareGPT "
                             "JSON file: a list of {'conversations': [{'from', 'value'}, ...]})")
        if self.endpoint not in ENDPOINTS:
            raise ValueError(f"--endpoint must be one of {ENDPOINTS}")
        if not 0 < self.range_ratio <= 1:
            raise ValueError("--range-ratio must be in (0, 1]")
        if self.request_rate <= 0:
            raise ValueError("--request-rate must be > 0 (inf: all at once)")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ValueError("--max-concurrency must be >= 1")


@dataclass
class BenchRequest:
    prompt: list[int]
    output_len: int


@dataclass
class RequestResult:
    prompt_len: int
    ok: bool = False
    error: str | None = None
    output_tokens: int = 0
    ttft_s: float | None = None
    e2e_s: float = 0.0
    itl_s: list[float] = field(default_factory=list)
    start_s: float = 0.0  # perf_counter when the request was sent

    @property
    def tpot_s(self) -> float | None:
        if self.ttft_s is None or self.output_tokens < 2:
            return None
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)


# ------------------------------------------------------------------ workload
def _lengths(rng: random.Random, n: int, length: int, ratio: float) -> list[int]:
    lo = max(1, int(length * ratio))
    return [rng.randint(lo, length) for _ in range(n)]


def _random_ids(rng: random.Random, n: int, vocab: int) -> list[int]:
    hi = min(vocab, 32000) - 1
    return [rng.randint(10 if hi > 10 else 0, hi) for _ in range(n)]


def _sharegpt_pairs(path: str) -> list[tuple[str, str]]:
    data = json.loads(Path(path).read_text())
    pairs = []
    for item in data:
        conv = item.get("conversations") or item.get("conversation") or []
        if len(conv) >= 2:
            pairs.append((str(conv[0].get("value", "")), str(conv[1].get("value", ""))))
    if not pairs:
        raise ValueError(f"{path}: no conversations with at least two turns")
    return pairs


async def build_requests(c: httpx.AsyncClient, wl: ServeWorkload, info: dict) -> list[BenchRequest]:
    rng = random.Random(wl.seed)
    vocab = int(info["vocab_size"])
    ctx = int(info["context_length"])
    if wl.dataset == "random":
        ins = _lengths(rng, wl.num_prompts, wl.input_len, wl.range_ratio)
        outs = _lengths(rng, wl.num_prompts, wl.output_len, wl.range_ratio)
        return [BenchRequest(_random_ids(rng, i, vocab), o) for i, o in zip(ins, outs)]
    pairs = _sharegpt_pairs(wl.dataset_path)
    rng.shuffle(pairs)
    has_tok = info.get("tokenizer_path") is not None
    reqs = []
    for prompt, reply in pairs:
        if len(reqs) == wl.num_prompts:
            break
        if has_tok:
            ids = await _tokenize(c, prompt)
            out_len = len(await _tokenize(c, reply))
        else:  # no tokenizer on the server: the usual ~4 characters per token
            ids = _random_ids(rng, max(1, len(prompt) // 4), vocab)
            out_len = max(1, len(reply) // 4)
        if len(ids) < 4 or out_len < 4 or len(ids) + out_len > ctx:  # as bench_serving filters
            continue
        reqs.append(BenchRequest(ids, out_len))
    if len(reqs) < wl.num_prompts:
        raise ValueError(f"{wl.dataset_path}: only {len(reqs)} usable conversations for "
                         f"{wl.num_prompts} prompts (context length {ctx})")
    return reqs


async def _tokenize(c: httpx.AsyncClient, text: str) -> list[int]:
    r = await c.post("/tokenize", json={"prompt": text, "add_special_tokens": False})
    r.raise_for_status()
    return r.json()["tokens"]


# ------------------------------------------------------------------ one request
def _body(wl: ServeWorkload, req: BenchRequest, model: str) -> tuple[str, dict]:
    if wl.endpoint == "generate":
        return "/generate", {"input_ids": req.prompt, "stream": True, "sampling_params": {
            "max_new_tokens": req.output_len, "temperature": wl.temperature,
            "ignore_eos": True}}
    return "/v1/completions", {"model": model, "prompt": req.prompt, "max_tokens": req.output_len,
                               "temperature": wl.temperature, "ignore_eos": True,
                               "stream": True, "stream_options": {"include_usage": True}}


async def send_one(c: httpx.AsyncClient, wl: ServeWorkload, req: BenchRequest,
                   model: str) -> RequestResult:
    res = RequestResult(len(req.prompt))
    path, body = _body(wl, req, model)
    start = res.start_s = time.perf_counter()
    last = None
    try:
        async with c.stream("POST", path, json=body) as r:
            if r.status_code != 200:
                res.error = f"HTTP {r.status_code}: {(await r.aread())[:200]!r}"
                return res
            async for line in r.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                item = json.loads(line[6:])
                if "error" in item:
                    res.error = str(item["error"].get("message", item["error"]))
                    return res
                now = time.perf_counter()
                if wl.endpoint == "generate":
                    n = len(item.get("output_ids") or ())
                else:
                    if item.get("usage") and not item.get("choices"):
                        res.output_tokens = item["usage"]["completion_tokens"]
                        continue
                    n = 1  # a chunk: its token count is only known in total
                if not n:
                    continue
                if last is None:
                    res.ttft_s = now - start
                else:
                    res.itl_s.extend([(now - last) / n] * n)
                last = now
                if wl.endpoint == "generate":
                    res.output_tokens += n
        res.ok = True
    except (httpx.HTTPError, ValueError) as exc:
        res.error = f"{type(exc).__name__}: {exc}"
    finally:
        res.e2e_s = time.perf_counter() - start
    return res


# ------------------------------------------------------------------ the run
def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def _stats(name: str, xs_s: list[float]) -> dict[str, float | None]:
    ms = [x * 1e3 for x in xs_s]
    return {f"{name}_ms_mean": statistics.fmean(ms) if ms else None,
            f"{name}_ms_median": statistics.median(ms) if ms else None,
            f"{name}_ms_p90": _pct(ms, 0.90), f"{name}_ms_p99": _pct(ms, 0.99)}


def summarize(wl: ServeWorkload, results: list[RequestResult], duration: float) -> dict[str, Any]:
    ok = [r for r in results if r.ok]
    out_tokens = sum(r.output_tokens for r in ok)
    in_tokens = sum(r.prompt_len for r in ok)
    summary: dict[str, Any] = {
        "workload": {**asdict(wl), "request_rate": str(wl.request_rate)},
        "completed": len(ok),
        "failed": len(results) - len(ok),
        "errors": sorted({r.error for r in results if r.error})[:5],
        "duration_s": duration,
        "prompt_tokens": in_tokens,
        "output_tokens": out_tokens,
        "request_throughput": len(ok) / duration,
        "input_tok_s": in_tokens / duration,
        "output_tok_s": out_tokens / duration,
        "total_tok_s": (in_tokens + out_tokens) / duration,
        # mean requests in flight (Little's law)
        "concurrency_mean": sum(r.e2e_s for r in ok) / duration,
    }
    summary.update(_stats("ttft", [r.ttft_s for r in ok if r.ttft_s is not None]))
    summary.update(_stats("tpot", [t for r in ok if (t := r.tpot_s) is not None]))
    summary.update(_stats("itl", [x for r in ok for x in r.itl_s]))
    summary.update(_stats("e2e", [r.e2e_s for r in ok]))
    return summary


async def run_serve_bench(base_url: str, wl: ServeWorkload, *, api_key: str | None = None,
                          model: str | None = None, warmup: bool = True,
                          progress: bool = False, per_request: bool = False) -> dict[str, Any]:
    """Run ``wl`` against the server at ``base_url``; the summary dict (see :func:`summarize`).
    ``per_request``: also ``requests``, one ``[sent_s, ttft_ms, e2e_ms, ok]`` per request in
    sending order (``sent_s`` from the first send), to see where a latency tail comes from."""
    wl.check()
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits,
                                 timeout=httpx.Timeout(None, connect=30)) as c:
        r = await c.get("/get_model_info")
        r.raise_for_status()
        info = r.json()
        model = model or info.get("served_model_name")
        reqs = await build_requests(c, wl, info)
        if warmup:
            w = await send_one(c, wl, BenchRequest(reqs[0].prompt, min(4, reqs[0].output_len)),
                               model)
            if not w.ok:
                raise RuntimeError(f"the warm-up request failed: {w.error}")
        sem = asyncio.Semaphore(wl.max_concurrency) if wl.max_concurrency else None
        rng = random.Random(wl.seed + 1)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(reqs), desc="bench serve", unit="req")

        async def limited(req: BenchRequest) -> RequestResult:
            if sem is None:
                res = await send_one(c, wl, req, model)
            else:
                async with sem:
                    res = await send_one(c, wl, req, model)
            if bar is not None:
                bar.update(1)
            return res

        start = time.perf_counter()
        tasks = []
        for req in reqs:
            tasks.append(asyncio.ensure_future(limited(req)))
            if math.isfinite(wl.request_rate):
                await asyncio.sleep(rng.expovariate(wl.request_rate))
        results = await asyncio.gather(*tasks)
        duration = time.perf_counter() - start
        if bar is not None:
            bar.close()
    summary = summarize(wl, list(results), duration)
    summary.update(base_url=base_url, model=model)
    if per_request:
        summary["requests"] = [
            [round(r.start_s - start, 4), None if r.ttft_s is None else round(r.ttft_s * 1e3, 2),
             round(r.e2e_s * 1e3, 1), r.ok] for r in results]
    return summary


def serve_summary_table(s: dict[str, Any]) -> str:
    """The summary as a table: throughput lines, then latency percentiles in milliseconds."""
    wl = s["workload"]

    def num(v: Any, d: int = 2) -> str:
        return "-" if v is None else f"{v:,.{d}f}" if isinstance(v, float) else f"{v:,}"

    rows = [
        ("server / model", f"{s.get('base_url')} / {s.get('model')}"),
        ("workload", f"{wl['num_prompts']} x {wl['dataset']} ({wl['input_len']} in, "
                     f"{wl['output_len']} out, ratio {wl['range_ratio']}) via /{wl['endpoint']}"),
        ("request rate / max concurrency", f"{wl['request_rate']} / {wl['max_concurrency']}"),
        ("completed / failed", f"{s['completed']} / {s['failed']}"),
        ("duration (s)", num(s["duration_s"], 3)),
        ("requests/s", num(s["request_throughput"], 3)),
        ("input / output tok/s", f"{num(s['input_tok_s'])} / {num(s['output_tok_s'])}"),
        ("mean concurrency", num(s["concurrency_mean"])),
    ]
    width = max(len(k) for k, _ in rows)
    lines = ["Online benchmark result", "-" * (width + 40)]
    lines += [f"{k:<{width}}  {v}" for k, v in rows]
    lines.append("")
    lines.append(f"{'latency (ms)':<{width}}  {'mean':>10} {'p50':>10} {'p90':>10} {'p99':>10}")
    for label, key in (("time to first token", "ttft"), ("time per output token", "tpot"),
                       ("inter-token latency", "itl"), ("end to end", "e2e")):
        lines.append(f"{label:<{width}}  " + " ".join(
            f"{num(s[f'{key}_ms_{q}'], 3):>10}" for q in ("mean", "median", "p90", "p99")))
    for e in s["errors"]:
        lines.append(f"error: {e}")
    return "\n".join(lines)
