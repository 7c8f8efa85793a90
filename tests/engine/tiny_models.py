"""Tiny random models of each supported architecture, saved with transformers, and a BPE
tokenizer trained locally (no hub access)."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import torch

TEXT_SOURCE = inspect.getsource(json)  # any offline text works for a tokenizer


def train_tokenizer(out: Path, vocab_size: int = 300):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TEXT_SOURCE.splitlines(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>")
    fast.chat_template = (
        "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<s>assistant:{% endif %}"
    )
    fast.save_pretrained(str(out))
    return fast


ARCHS = ("llama", "qwen2", "qwen3", "mistral", "llama3-scaled")
# MoE: several expert counts, top-k 1/2/8, dense layers among sparse ones, skewed routing
MOE_ARCHS = {
    # Qwen3-MoE, 8 experts top-2, raw top-k weights, layer 1 dense (mlp_only_layers)
    "qwen3-moe": dict(num_experts=8, num_experts_per_tok=2, norm_topk_prob=False,
                      mlp_only_layers=[1]),
    # Qwen3-MoE, 16 experts top-8, renormalised, every 2nd layer sparse (decoder_sparse_step)
    "qwen3-moe-k8": dict(num_experts=16, num_experts_per_tok=8, norm_topk_prob=True,
                         decoder_sparse_step=2, num_hidden_layers=3),
    # Mixtral, 4 experts top-2
    "mixtral": dict(num_local_experts=4, num_experts_per_tok=2),
    # Mixtral, 32 experts top-1 with expert 0's router row scaled up: skewed loads, and most
    # experts get no token in a decode step
    "mixtral-k1-skewed": dict(num_local_experts=32, num_experts_per_tok=1),
}


def build_model(arch: str, out: Path, vocab_size: int = 300, seed: int = 0, **overrides) -> Path:
    """Save a tiny random ``arch`` model (plus tokenizer) to ``out``; returns ``out``."""
    import transformers as tf

    torch.manual_seed(seed)
    common = dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=96,
                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=512, bos_token_id=0, eos_token_id=1, pad_token_id=2)
    common.update(MOE_ARCHS.get(arch, {}))
    common.update(overrides)
    if arch.startswith("qwen3-moe"):
        cfg = tf.Qwen3MoeConfig(**{**common, "intermediate_size": 96}, moe_intermediate_size=40,
                                head_dim=32)
        cls = tf.Qwen3MoeForCausalLM
    elif arch.startswith("mixtral"):
        cfg = tf.MixtralConfig(**{**common, "intermediate_size": 40}, sliding_window=None)
        cls = tf.MixtralForCausalLM
    elif arch == "llama":
        cfg = tf.LlamaConfig(**common)
        cls = tf.LlamaForCausalLM
    elif arch == "llama3-scaled":
        cfg = tf.LlamaConfig(**common, rope_theta=500000.0, rope_scaling={
            "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 64})
        cls = tf.LlamaForCausalLM
    elif arch == "mistral":
        cfg = tf.MistralConfig(**common, sliding_window=None)
        cls = tf.MistralForCausalLM
    elif arch == "qwen2":
        cfg = tf.Qwen2Config(**common, tie_word_embeddings=True)
        cls = tf.Qwen2ForCausalLM
    elif arch == "qwen3":
        cfg = tf.Qwen3Config(**common, head_dim=32, tie_word_embeddings=False)
        cls = tf.Qwen3ForCausalLM
    else:
        raise ValueError(arch)
    model = cls(cfg)
    with torch.no_grad():  # make logits less flat than the default init so greedy is stable
        for p in model.parameters():
            if p.dim() >= 2:  # matrices and stacked experts
                p.normal_(0, 0.08)
        if arch.endswith("skewed"):
            for layer in model.model.layers:
                layer.mlp.gate.weight[0] *= 4.0
    model.save_pretrained(str(out))
    train_tokenizer(out, vocab_size)
    return out


def hf_greedy(path: Path, prompts: list[list[int]], max_new_tokens: int,
              dtype=torch.float32) -> tuple[list[list[int]], list[list[float]]]:
    """Reference greedy tokens and chosen-token logprobs from transformers ``generate``."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype).eval()
    tokens, logprobs = [], []
    for p in prompts:
        with torch.no_grad():
            out = model.generate(torch.tensor([p]), max_new_tokens=max_new_tokens,
                                 do_sample=False, eos_token_id=None, pad_token_id=2,
                                 output_scores=True, return_dict_in_generate=True,
                                 output_logits=True)
        toks = out.sequences[0, len(p):].tolist()
        lps = [torch.log_softmax(lg[0].float(), -1)[t].item() for lg, t in zip(out.logits, toks)]
        tokens.append(toks)
        logprobs.append(lps)
    return tokens, logprobs


def random_prompts(lengths, vocab_size: int = 300, seed: int = 1) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, vocab_size, (n,), generator=g).tolist() for n in lengths]
