#!/usr/bin/env python3
"""Train Anyware's built-in demo models: a tiny Llama and a smaller draft model for it.

Everything is trained from data already on the machine, so `anyware serve` works offline:

* Data: the Python standard library's own ``.py`` files (tests, encodings tables and
  ``pydoc_data`` excluded), in sorted order. About 3% of the files (chosen by a CRC of their
  relative path) are held out for validation. A small share of chat-formatted examples is
  derived from the training files' docstrings and function sources, so the model also
  learns the chat template and to stop with ``<|end|>``.
* Tokenizer: byte-level BPE (``tokenizers``), saved as a Hugging Face fast tokenizer with
  special tokens and a Jinja chat template.
* Models: ``transformers.LlamaForCausalLM`` trained on CPU with AdamW and a cosine learning
  rate schedule over a wall-clock budget, saved as bfloat16 safetensors.

Output: ``<out>/demo-llama/`` and ``<out>/demo-llama-draft/``, each a complete model directory
with a ``TRAINING.json`` record. Example::

    python scripts/train_demo_model.py --out core/assets --minutes 11 --draft-minutes 3
"""

from __future__ import annotations

import argparse
import ast
import datetime
import json
import math
import os
import platform
import random
import sys
import sysconfig
import textwrap
import time
import tokenize
import zlib
from pathlib import Path

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from tqdm import tqdm
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<|bos|>", "<|eos|>", "<|pad|>", "<|user|>", "<|assistant|>", "<|system|>",
                  "<|end|>"]
CHAT_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] not in ['system', 'user', 'assistant'] -%}"
    "{{- raise_exception('Unsupported role: ' + message['role']) -}}"
    "{%- endif -%}"
    "{{- '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|assistant|>\\n' -}}{%- endif -%}"
)
EXCLUDED_DIRS = {"site-packages", "test", "tests", "idle_test", "pydoc_data", "encodings",
                 "__pycache__"}
MAX_FILE_BYTES = 300_000
MODELS = {  # name -> (LlamaConfig overrides, peak learning rate)
    "demo-llama": (dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                        num_key_value_heads=2, intermediate_size=704), 2e-3),
    "demo-llama-draft": (dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                              num_key_value_heads=2, intermediate_size=352), 3e-3),
}


def collect_sources(root: Path, val_percent: int) -> tuple[list[tuple[str, str]], ...]:
    """Read the stdlib's .py files in sorted order; return (train, val) lists of (path, text)."""
    train, val = [], []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if EXCLUDED_DIRS & set(rel.split("/")[:-1]) or path.stat().st_size > MAX_FILE_BYTES:
            continue
        try:
            with tokenize.open(path) as f:  # honours PEP 263 coding cookies
                text = f.read()
        except (OSError, SyntaxError, UnicodeDecodeError):
            continue
        held_out = zlib.crc32(rel.encode()) % 100 < val_percent
        (val if held_out else train).append((rel, text))
    return train, val


def definitions(tree: ast.Module):
    """Yield (qualified name, node) for public top-level functions/classes and their methods."""
    kinds = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
    for node in tree.body:
        if isinstance(node, kinds) and not node.name.startswith("_"):
            yield node.name, node
            for child in node.body if isinstance(node, ast.ClassDef) else []:
                if isinstance(child, kinds) and not child.name.startswith("_"):
                    yield f"{node.name}.{child.name}", child


def chat_examples(sources: list[tuple[str, str]]) -> list[list[dict[str, str]]]:
    """Question/answer conversations about documented functions and classes in `sources`."""
    conversations = []
    for rel, text in sources:
        module = rel.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        lines = text.splitlines(keepends=True)
        for name, node in definitions(tree):
            doc = ast.get_docstring(node)
            source = textwrap.dedent("".join(lines[node.lineno - 1:node.end_lineno])).strip()
            if doc:
                summary = doc.split("\n\n")[0].strip()[:400]
                conversations.append([
                    {"role": "user", "content": f"What does `{module}.{name}` do?"},
                    {"role": "assistant", "content": summary},
                ])
            if len(source) < 800:
                conversations.append([
                    {"role": "user", "content": f"Show me the code of `{module}.{name}`."},
                    {"role": "assistant", "content": f"```python\n{source}\n```"},
                ])
    return conversations


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    bos = tok.token_to_id("<|bos|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|bos|> $A", pair="<|bos|> $A <|bos|> $B", special_tokens=[("<|bos|>", bos)])
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|eos|>", pad_token="<|pad|>",
        extra_special_tokens=SPECIAL_TOKENS[3:], model_max_length=2048)
    hf_tok.chat_template = CHAT_TEMPLATE
    return hf_tok


def encode(tok: PreTrainedTokenizerFast, docs: list[str], add_bos: bool) -> torch.Tensor:
    """Concatenate documents into one token stream: [<|bos|>] doc <|eos|> ..."""
    encodings = tok.backend_tokenizer.encode_batch(docs, add_special_tokens=add_bos)
    ids = [i for enc in encodings for i in [*enc.ids, tok.eos_token_id]]
    return torch.tensor(ids, dtype=torch.long)


def batch_at(stream: torch.Tensor, starts: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Windows stream[s:s + seq_len] for each s in starts, as a (len(starts), seq_len) batch."""
    return stream[starts.to(stream.device)[:, None] + torch.arange(seq_len, device=stream.device)]


@torch.no_grad()
def evaluate(model: LlamaForCausalLM, stream: torch.Tensor, seq_len: int, n: int) -> float:
    """Mean loss over `n` evenly spaced windows of the stream (deterministic)."""
    model.eval()
    starts = torch.linspace(0, len(stream) - seq_len - 1, n).long()
    losses = [model(input_ids=x, labels=x).loss.item()
              for x in batch_at(stream, starts, seq_len).split(16)]
    model.train()
    return sum(losses) / len(losses)


def train_model(name: str, tok: PreTrainedTokenizerFast, train_ids: torch.Tensor,
                val_ids: torch.Tensor, minutes: float, steps: int | None,
                args: argparse.Namespace) -> tuple:
    """Train until `steps` (if given) or the wall-clock budget, whichever comes first."""
    overrides, peak_lr = MODELS[name]
    torch.manual_seed(args.seed)
    config = LlamaConfig(
        vocab_size=len(tok), max_position_embeddings=2048, rope_theta=10000.0,
        tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, **overrides)
    model = LlamaForCausalLM(config).to(args.device)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{name}: {n_params / 1e6:.2f}M parameters, budget {minutes:g} min, {steps} steps")
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=peak_lr, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(args.seed)
    budget, warmup, start = minutes * 60.0, 0.05, time.time()
    step, smooth, val_curve = 0, None, []
    bar = tqdm(total=100, desc=name, bar_format="{l_bar}{bar}| {n:.0f}%{postfix}")
    while (progress := max((time.time() - start) / budget, step / (steps or math.inf))) < 1.0:
        if progress * 10 >= len(val_curve):  # validation loss at every 10% of progress
            val_curve.append([step, round(evaluate(model, val_ids, args.seq_len, 32), 4)])
            tqdm.write(f"{name}: step {step} val loss {val_curve[-1][1]:.3f}")
        # Cosine schedule over progress (steps or wall clock), with linear warmup, to 10% of peak.
        if progress < warmup:
            lr = peak_lr * progress / warmup
        else:
            cosine = math.cos(math.pi * (progress - warmup) / (1 - warmup))
            lr = peak_lr * (0.1 + 0.45 * (1 + cosine))
        for group in opt.param_groups:
            group["lr"] = lr
        starts = torch.randint(0, len(train_ids) - args.seq_len - 1, (args.batch_size,),
                               generator=gen)
        x = batch_at(train_ids, starts, args.seq_len)
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        smooth = loss.item() if smooth is None else 0.95 * smooth + 0.05 * loss.item()
        bar.set_postfix_str(f"step {step} loss {smooth:.3f} lr {lr:.2e}")
        bar.update(min(100 * progress, 100) - bar.n)
    bar.close()
    wall = time.time() - start
    train_loss = evaluate(model, train_ids, args.seq_len, args.eval_windows)
    val_loss = evaluate(model, val_ids, args.seq_len, args.eval_windows)
    print(f"{name}: {step} steps in {wall:.0f}s, train loss {train_loss:.3f}, "
          f"val loss {val_loss:.3f}")
    stats = {"parameters": n_params, "steps": step, "wall_time_s": round(wall, 1),
             "tokens_seen": step * args.batch_size * args.seq_len, "peak_lr": peak_lr,
             "final_train_loss": round(train_loss, 4), "final_val_loss": round(val_loss, 4),
             "val_loss_curve": val_curve}
    return model, stats


def save(model: LlamaForCausalLM, tok: PreTrainedTokenizerFast, out: Path, record: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, pad_token_id=tok.pad_token_id,
        eos_token_id=[tok.eos_token_id, tok.convert_tokens_to_ids("<|end|>")])
    model.to(torch.bfloat16).save_pretrained(out)
    tok.save_pretrained(out)
    # Legacy spellings of the dtype and RoPE base, for readers of older config.json layouts.
    cfg_path = out / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.update(torch_dtype="bfloat16", rope_theta=model.config.rope_parameters["rope_theta"])
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    (out / "TRAINING.json").write_text(json.dumps(record, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--minutes", type=float, default=10.0, help="main model budget")
    parser.add_argument("--draft-minutes", type=float, default=3.0, help="draft model budget")
    parser.add_argument("--steps", type=int, help="main model steps (default: time budget only)")
    parser.add_argument("--draft-steps", type=int, help="draft model steps")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--stdlib", type=Path, default=Path(sysconfig.get_paths()["stdlib"]),
                        help="directory of Python sources (default: this interpreter's stdlib)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--val-percent", type=int, default=3, help="held-out share of files")
    parser.add_argument("--chat-share", type=float, default=0.1,
                        help="chat examples, as a fraction of training source characters")
    parser.add_argument("--eval-windows", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    torch.set_float32_matmul_precision("high")  # TF32 matmuls where the device has them

    root = args.stdlib.resolve()
    train_src, val_src = collect_sources(root, args.val_percent)
    conversations = chat_examples(train_src)
    random.Random(args.seed).shuffle(conversations)
    code_chars = sum(len(text) for _, text in train_src)
    print(f"{len(train_src)} train / {len(val_src)} val files from {root}")

    tok = train_tokenizer([text for _, text in train_src], args.vocab_size)
    chats, chat_chars = [], 0
    for conv in conversations:
        if chat_chars >= args.chat_share * code_chars:
            break
        chats.append(tok.apply_chat_template(conv, tokenize=False))
        chat_chars += len(chats[-1])
    code_docs = [text for _, text in train_src]
    random.Random(args.seed).shuffle(code_docs)
    train_ids = torch.cat([encode(tok, code_docs, True), encode(tok, chats, False)])
    val_ids = encode(tok, [text for _, text in val_src], True)
    train_ids, val_ids = train_ids.to(args.device), val_ids.to(args.device)
    print(f"{len(train_ids):,} train tokens ({len(chats)} chats), {len(val_ids):,} val tokens")

    data = {
        "source": f"Python standard library .py files under {root}, "
                  f"excluding {sorted(EXCLUDED_DIRS)} and files over {MAX_FILE_BYTES} bytes",
        "train_files": len(train_src), "val_files": len(val_src),
        "train_bytes": sum(len(t.encode()) for _, t in train_src),
        "val_bytes": sum(len(t.encode()) for _, t in val_src),
        "chat_examples": len(chats), "train_tokens": len(train_ids), "val_tokens": len(val_ids),
        "vocab_size": len(tok),
    }
    on_cuda = args.device.startswith("cuda")
    device = torch.cuda.get_device_name() if on_cuda else f"{torch.get_num_threads()} CPU threads"
    for name, minutes, steps in [("demo-llama", args.minutes, args.steps),
                                 ("demo-llama-draft", args.draft_minutes, args.draft_steps)]:
        model, stats = train_model(name, tok, train_ids, val_ids, minutes, steps, args)
        record = {
            "model": name, "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "python_version": platform.python_version(), "device": f"{args.device} ({device})",
            "torch_version": torch.__version__, "transformers_version": transformers.__version__,
            "seed": args.seed, "threads": torch.get_num_threads(), "seq_len": args.seq_len,
            "batch_size": args.batch_size, "data": data, **stats,
        }
        save(model, tok, args.out / name, record)
        print(f"saved {args.out / name}")


if __name__ == "__main__":
    main()
