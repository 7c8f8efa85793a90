"""A word-level tokenizer of a preset's vocabulary size, for load generators that need one
(GuideLLM builds its synthetic prompts with a tokenizer) against a server running a preset
with random weights (no hub access on the GPU machine, and presets have no tokenizer).

The vocabulary: ``[UNK]`` (id 0), the English words Faker's lorem provider writes (what
GuideLLM's synthetic prompts are made of, lower-cased), ``.`` and ``,``, then ``w<i>`` up to
the size: text splits on whitespace and punctuation, so a synthetic prompt's words are real
tokens (GuideLLM drops special tokens such as ``[UNK]`` when it decodes a prompt), a prompt of
``n`` tokens re-encodes to ``n`` tokens on the server, and any id the random model generates
decodes (to a word or ``w<id>``).

    python benchmarks/gpu/wordlevel_tokenizer.py --vocab 151936 --out /tmp/wordtok
"""

from __future__ import annotations

import argparse

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast


def _words() -> list[str]:
    try:
        from faker.providers.lorem.en_US import Provider
    except ImportError:  # no Faker: prompts are then all [UNK]
        return []
    return sorted({w.lower() for w in Provider.word_list})


def build(vocab_size: int, out: str) -> None:
    words = [w for w in [*_words(), ".", ","] if w]
    vocab = {"[UNK]": 0}
    for w in words:
        vocab.setdefault(w, len(vocab))
    vocab.update({f"w{i}": i for i in range(len(vocab), vocab_size)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
    fast.save_pretrained(out)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab", type=int, required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    build(args.vocab, args.out)
    print(f"word-level tokenizer of {args.vocab} tokens in {args.out}")
