"""Incremental detokenization equals decoding the whole output, token by token, through the
fast (Rust) path and through the tokenizer wrapper (used when it post-processes text)."""

import random

import pytest
from anyware import SamplingParams
from anyware.engine.detokenizer import OutputAssembler
from anyware.request.delta import TokenDelta
from transformers import AutoTokenizer


@pytest.mark.parametrize("skip_special", [True, False])
@pytest.mark.parametrize("fast", [True, False])
def test_streamed_text_equals_full_decode(model_dir, skip_special, fast):
    tok = AutoTokenizer.from_pretrained(str(model_dir("llama")))
    rng = random.Random(7)
    ids = [rng.randrange(tok.vocab_size) for _ in range(200)] + [tok.eos_token_id]
    params = SamplingParams(max_new_tokens=300, skip_special_tokens=skip_special)
    asm = OutputAssembler("r", [1, 2], params, tok, ["r"])
    assert asm._fast is not None
    if not fast:
        asm._fast = None  # the wrapper's decode, as for tokenizers that clean up spaces
    for i, t in enumerate(ids):
        asm.add(TokenDelta("r", [t], None, i == len(ids) - 1, "stop" if i == len(ids) - 1 else None))
    out = asm.final_output().outputs[0]
    assert out.text == tok.decode(ids, skip_special_tokens=skip_special)


def test_wrapper_decode_when_the_tokenizer_cleans_up_spaces(model_dir):
    tok = AutoTokenizer.from_pretrained(str(model_dir("llama")))
    tok.clean_up_tokenization_spaces = True
    asm = OutputAssembler("r", [1], SamplingParams(), tok, ["r"])
    assert asm._fast is None
