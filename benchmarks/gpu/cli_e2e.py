"""`anyware serve --model DIR` end to end, the way a user runs it, on any platform.

1. Builds a Hugging Face model directory: Llama architecture (Llama-3.2-1B shape by default,
   llama3 rope scaling, tied embeddings), random weights saved with ``save_pretrained``, a
   BPE tokenizer trained locally with a chat template (no hub access anywhere).
2. Starts ``anyware serve --model DIR`` as a subprocess (the CLI entry point, default options
   unless ``--serve-arg`` adds some) and waits for ``/health``.
3. Drives it over HTTP: ``/v1/models``, chat and text completions (plain and streamed),
   ``/generate`` with token ids, concurrent requests, bad input (must be 4xx with an
   OpenAI-style error body), ``/metrics``; then SIGTERM and a clean exit.
4. With ``--parity``: greedy ``/generate`` output against transformers ``generate`` on the
   same directory and device (serve with ``--serve-arg=--dtype=float32`` for token parity).

Writes one JSON summary (``--out``); exits non-zero when a check fails.

    python benchmarks/gpu/cli_e2e.py --out cli.json
    python benchmarks/gpu/cli_e2e.py --out cli32.json --parity --serve-arg=--dtype=float32
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def _text_corpus() -> list[str]:
    import argparse as a
    import asyncio as b
    import json as c
    import pathlib as d
    import subprocess as e

    return [line for m in (a, b, c, d, e) for line in inspect.getsource(m).splitlines()]


def build_model_dir(out: Path, hidden: int, layers: int, heads: int, kv_heads: int,
                    inter: int, vocab: int, seed: int, dev: str) -> dict:
    import torch
    import transformers as tf
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=["<|begin|>", "<|end|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_text_corpus(), trainer)
    fast = tf.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin|>",
                                      eos_token="<|end|>", pad_token="<|pad|>")
    fast.chat_template = (
        "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>"
        "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")
    fast.save_pretrained(str(out))
    cfg = tf.LlamaConfig(
        vocab_size=len(fast), hidden_size=hidden, intermediate_size=inter,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
        max_position_embeddings=8192, rms_norm_eps=1e-5, tie_word_embeddings=True,
        rope_theta=500000.0, rope_scaling={
            "rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 1024},
        bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id, torch_dtype="bfloat16")
    torch.manual_seed(seed)
    with torch.device(dev):
        model = tf.LlamaForCausalLM(cfg)
    with torch.no_grad():  # peaked enough logits that greedy is not a coin toss
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0, 0.5 / hidden**0.5 if "embed" not in name else 1.0)
    model.to(torch.bfloat16).save_pretrained(str(out))
    params = sum(p.numel() for p in model.parameters())
    del model
    return {"params": params, "vocab": len(fast), "hidden": hidden, "layers": layers}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Checks:
    def __init__(self) -> None:
        self.results: dict[str, dict] = {}

    def record(self, name: str, ok: bool, **info) -> None:
        self.results[name] = {"ok": bool(ok), **info}
        print(f"[{'PASS' if ok else 'FAIL'}] {name} {json.dumps(info)[:300]}", flush=True)

    @property
    def ok(self) -> bool:
        return all(r["ok"] for r in self.results.values())


def _sse(resp: httpx.Response) -> list[dict | str]:
    events = []
    for line in resp.text.splitlines():
        if line.startswith("data: "):
            data = line[6:]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def _error_shape(r: httpx.Response) -> bool:
    try:
        err = r.json()["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return isinstance(err.get("message"), str) and "type" in err


async def _concurrent(base: str, model: str, n: int, prompt: str, max_tokens: int) -> dict:
    async with httpx.AsyncClient(base_url=base, timeout=300) as client:
        async def one(i: int):
            t0 = time.perf_counter()
            r = await client.post("/v1/completions", json={
                "model": model, "prompt": f"{prompt} {i}", "max_tokens": max_tokens,
                "temperature": 0.8, "seed": i, "ignore_eos": True})
            return r, time.perf_counter() - t0

        t0 = time.perf_counter()
        res = await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.perf_counter() - t0
    codes = [r.status_code for r, _ in res]
    toks = [r.json()["usage"]["completion_tokens"] for r, _ in res if r.status_code == 200]
    lat = sorted(d for _, d in res)
    return {"requests": n, "status_200": codes.count(200), "completion_tokens": sum(toks),
            "all_full_length": toks == [max_tokens] * n, "wall_s": round(wall, 3),
            "output_tok_s": round(sum(toks) / wall, 1),
            "latency_s_median": round(lat[len(lat) // 2], 3), "latency_s_max": round(lat[-1], 3)}


def hf_reference(model_dir: Path, prompts: list[list[int]], n: int, dtype: str, dev: str) -> list:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        str(model_dir), dtype=getattr(torch, dtype)).to(dev).eval()
    outs = []
    for p in prompts:
        with torch.no_grad():
            g = model.generate(torch.tensor([p], device=dev), max_new_tokens=n, do_sample=False,
                               eos_token_id=None, pad_token_id=2, output_logits=True,
                               return_dict_in_generate=True)
        toks = g.sequences[0, len(p):].tolist()
        lps = [torch.log_softmax(lg[0].float(), -1) for lg in g.logits]
        outs.append((toks, lps))
    del model
    torch.cuda.empty_cache() if dev.startswith("cuda") else None
    return outs


def drive(base: str, model: str, checks: Checks, args) -> list[list[int]]:
    c = httpx.Client(base_url=base, timeout=300)
    r = c.get("/v1/models")
    checks.record("models", r.status_code == 200 and r.json()["data"][0]["id"] == model,
                  status=r.status_code)

    t0 = time.perf_counter()
    r = c.post("/v1/chat/completions", json={
        "model": model, "messages": [{"role": "user", "content": "Write a JSON parser."}],
        "max_tokens": 32, "temperature": 0, "ignore_eos": True})
    body = r.json()
    checks.record("chat", r.status_code == 200
                  and isinstance(body["choices"][0]["message"]["content"], str)
                  and body["usage"]["completion_tokens"] == 32,
                  status=r.status_code, latency_s=round(time.perf_counter() - t0, 3),
                  usage=body.get("usage"), text=body["choices"][0]["message"]["content"][:80]
                  if r.status_code == 200 else body)

    r = c.post("/v1/completions", json={
        "model": model, "prompt": "def main(argv):\n", "max_tokens": 24, "stream": True,
        "temperature": 0.7, "seed": 3, "ignore_eos": True,
        "stream_options": {"include_usage": True}})
    ev = _sse(r)
    text = "".join(e["choices"][0]["text"] for e in ev if isinstance(e, dict) and e["choices"])
    usage = [e["usage"] for e in ev if isinstance(e, dict) and e.get("usage")]
    checks.record("completion_stream", r.status_code == 200 and ev and ev[-1] == "[DONE]"
                  and usage and usage[-1]["completion_tokens"] == 24,
                  status=r.status_code, events=len(ev), text=text[:80])

    prompts = [[(37 * i + 11 * j) % (args.vocab_used - 10) + 5 for j in range(n)]
               for i, n in enumerate((17, 64, 130, 311))]
    outs = []
    for p in prompts:
        r = c.post("/generate", json={"input_ids": p, "sampling_params": {
            "max_new_tokens": args.parity_tokens, "temperature": 0, "ignore_eos": True}})
        ok = r.status_code == 200 and len(r.json()["output_ids"]) == args.parity_tokens
        outs.append(r.json()["output_ids"] if ok else [])
    checks.record("generate_ids", all(outs), prompts=len(prompts))

    conc = asyncio.run(_concurrent(base, model, args.concurrency, "import json\n", 64))
    checks.record("concurrent", conc["status_200"] == conc["requests"]
                  and conc["all_full_length"], **conc)

    bad = {
        "negative_max_tokens": ("/v1/completions",
                                {"model": model, "prompt": "x", "max_tokens": -1}),
        "unknown_model": ("/v1/completions", {"model": "nope", "prompt": "x"}),
        "prompt_too_long": ("/v1/completions",
                            {"model": model, "prompt": [5] * 100_000, "max_tokens": 4}),
        "token_out_of_vocab": ("/generate", {"input_ids": [10**9]}),
        "malformed_json": ("/v1/chat/completions", None),
    }
    for name, (path, payload) in bad.items():
        if payload is None:
            r = c.post(path, content=b"{not json", headers={"Content-Type": "application/json"})
        else:
            r = c.post(path, json=payload)
        checks.record(f"bad_input.{name}", 400 <= r.status_code < 500 and _error_shape(r),
                      status=r.status_code, message=r.text[:160])
    r = c.get("/health")
    checks.record("health_after_bad_input", r.status_code == 200)
    r = c.get("/metrics")
    checks.record("metrics", r.status_code == 200 and "anyware" in r.text, bytes=len(r.text))
    return [prompts, outs]


def _serve_and_drive(proc, base: str, model: str, checks: Checks, args, out: dict, t0: float):
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before /health")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.perf_counter() - t0 > 600:
            raise RuntimeError("server did not answer /health in 600 s")
        time.sleep(0.5)
    out["startup_s"] = round(time.perf_counter() - t0, 1)
    return drive(base, model, checks, args)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--model-dir", default="/tmp/anyware-llama-1b")
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--inter", type=int, default=8192)
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--serve-arg", action="append", default=[],
                    help="extra `anyware serve` argument (repeatable, e.g. --serve-arg=--dtype=float32)")
    ap.add_argument("--parity", action="store_true", help="compare greedy output with transformers")
    ap.add_argument("--parity-dtype", default="float32")
    ap.add_argument("--parity-tokens", type=int, default=32)
    ap.add_argument("--concurrency", type=int, default=64)
    args = ap.parse_args()

    out: dict = {"commit": os.environ.get("ANYWARE_COMMIT", "unknown"),
                 "serve_args": args.serve_arg}
    mdir = Path(args.model_dir)
    if not (mdir / "config.json").exists():
        t0 = time.perf_counter()
        out["model"] = build_model_dir(mdir, args.hidden, args.layers, args.heads, args.kv_heads,
                                       args.inter, args.vocab, 0, args.device)
        out["model"]["build_s"] = round(time.perf_counter() - t0, 1)
    args.vocab_used = json.loads((mdir / "config.json").read_text())["vocab_size"]
    out["model_dir"] = sorted(p.name for p in mdir.iterdir())

    port = _free_port()
    cmd = ["anyware", "serve", "--model", str(mdir), "--port", str(port), *args.serve_arg]
    out["command"] = " ".join(cmd)
    base = f"http://127.0.0.1:{port}"
    checks = Checks()
    with open(Path(args.out).with_suffix(".serve.log"), "w") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            prompts, outs = _serve_and_drive(proc, base, str(mdir), checks, args, out, t0)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = "killed after 60 s"
    checks.record("clean_exit_on_sigterm", rc == 0, returncode=rc)

    if args.parity:
        ref = hf_reference(mdir, prompts, args.parity_tokens, args.parity_dtype, args.device)
        rows = []
        for ours, (theirs, lps) in zip(outs, ref):
            first = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), None)
            row = {"len": len(ours), "identical": first is None}
            if first is not None:  # how close was the reference's own choice at the split?
                lp = lps[first]
                row.update(first_diff=first, ours=ours[first], ref=theirs[first],
                           ref_gap=round((lp[theirs[first]] - lp[ours[first]]).item(), 4))
            rows.append(row)
        checks.record("greedy_parity_vs_transformers",
                      all(r["identical"] for r in rows), dtype=args.parity_dtype, rows=rows)

    out["checks"] = checks.results
    out["all_passed"] = checks.ok
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(json.dumps({k: v for k, v in out.items() if k != "checks"}, indent=1))
    return 0 if checks.ok else 1


if __name__ == "__main__":
    sys.exit(main())
