"""The in-run peer: Hugging Face transformers on the same prompts.

* ``generate_static``: ``generate`` with a static KV cache (compiled by transformers on CUDA),
  one request at a time: the W1 peer.
* ``generate_padded``: batched ``generate`` with left padding, the CPU peer.
* ``generate_batch``: transformers' continuous batching (``generate_batch``), the W2 peer.
* ``time_to_first_token``: ``generate`` of one token from a fresh prompt (SDPA attention),
  the W3 peer.
"""

from __future__ import annotations

import time

import torch


def dummy_model(config_dict: dict, dtype: torch.dtype, device: str):
    """A transformers model of the given HF config with random weights on ``device``."""
    import transformers as tf

    cfg = tf.AutoConfig.for_model(**config_dict)
    with torch.device(device):
        model = tf.AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    return model.eval()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.no_grad()
def generate_static(model, prompt: list[int], new_tokens: int, device: str, repeats: int = 2) -> dict:
    from transformers import GenerationConfig

    gc = GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                          cache_implementation="static", pad_token_id=0)
    ids = torch.tensor([prompt], device=device)
    t0 = time.perf_counter()
    model.generate(ids, generation_config=gc)  # first call compiles
    _sync(device)
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = model.generate(ids, generation_config=gc)
        _sync(device)
        times.append(time.perf_counter() - t0)
    n = out.shape[1] - len(prompt)
    best = min(times)
    return {"first_call_s": round(first, 2), "wall_s": round(best, 3), "new_tokens": n,
            "tok_s": round(n / best, 2), "ms_per_token": round(best / n * 1e3, 3)}


@torch.no_grad()
def time_to_first_token(model, prompt: list[int], device: str, repeats: int = 5) -> dict:
    """Median wall time of ``generate(max_new_tokens=1)`` on one prompt (after a warm-up)."""
    import statistics

    ids = torch.tensor([prompt], device=device)
    kw = dict(max_new_tokens=1, min_new_tokens=1, do_sample=False, pad_token_id=0)
    model.generate(ids, **kw)
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.generate(ids, **kw)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return {"ttft_ms": round(statistics.median(times) * 1e3, 2), "repeats": repeats}


@torch.no_grad()
def generate_padded(model, prompts: list[list[int]], new_tokens: int, device: str,
                    batch_size: int) -> dict:
    t0 = time.perf_counter()
    out_tokens = 0
    for i in range(0, len(prompts), batch_size):
        chunk = prompts[i : i + batch_size]
        width = max(map(len, chunk))
        ids = torch.tensor([[0] * (width - len(p)) + p for p in chunk], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk], device=device)
        out = model.generate(ids, attention_mask=mask, max_new_tokens=new_tokens,
                             min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
        out_tokens += (out.shape[1] - width) * len(chunk)
    _sync(device)
    wall = time.perf_counter() - t0
    prompt_tokens = sum(map(len, prompts))
    return {"wall_s": round(wall, 3), "output_tokens": out_tokens,
            "output_tok_s": round(out_tokens / wall, 2),
            "total_tok_s": round((out_tokens + prompt_tokens) / wall, 2)}


@torch.no_grad()
def generate_batch(model, prompts: list[list[int]], new_tokens: int, device: str) -> dict:
    from transformers import GenerationConfig

    gc = GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                          eos_token_id=-1, pad_token_id=0)
    model.generate_batch(inputs=prompts[:2], generation_config=GenerationConfig(
        max_new_tokens=4, do_sample=False, eos_token_id=-1, pad_token_id=0))  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    results = model.generate_batch(inputs=prompts, generation_config=gc)
    _sync(device)
    wall = time.perf_counter() - t0
    out_tokens = sum(len(r.generated_tokens) for r in results.values())
    prompt_tokens = sum(map(len, prompts))
    return {"wall_s": round(wall, 3), "output_tokens": out_tokens,
            "output_tok_s": round(out_tokens / wall, 2),
            "total_tok_s": round((out_tokens + prompt_tokens) / wall, 2)}
