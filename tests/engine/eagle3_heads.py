"""EAGLE-3 heads saved in the published checkpoint layout (config.json with architecture
``LlamaForCausalLMEagle3`` + ``model.safetensors`` with ``fc``, ``midlayer.*``, ``norm``,
``lm_head``, ``d2t``, ``t2d``; no ``embed_tokens``: the target's is shared), and a target they
can predict exactly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

H, HEADS, KV_HEADS, INTER, VOCAB = 64, 4, 2, 96, 300


def save_head(out: Path, tensors: dict[str, torch.Tensor], layer_ids=(-1, 0, 0),
              draft_vocab: int = VOCAB, vocab: int = VOCAB) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    cfg = {"architectures": ["LlamaForCausalLMEagle3"], "model_type": "llama",
           "hidden_size": H, "intermediate_size": INTER, "num_hidden_layers": 1,
           "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "vocab_size": vocab,
           "draft_vocab_size": draft_vocab, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
           "max_position_embeddings": 512, "tie_word_embeddings": False,
           "eagle_config": {"eagle_aux_hidden_state_layer_ids": list(layer_ids)}}
    (out / "config.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / "model.safetensors"))
    return out


def head_tensors(seed: int, draft_vocab: int, hot: torch.Tensor,
                 vocab: int = VOCAB) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=g) * 0.08

    d = H // HEADS
    t2d = torch.zeros(vocab, dtype=torch.bool)
    t2d[hot] = True
    return {
        "fc.weight": rnd(H, 3 * H),
        "midlayer.input_layernorm.weight": torch.ones(H),
        "midlayer.hidden_norm.weight": torch.ones(H),
        "midlayer.post_attention_layernorm.weight": torch.ones(H),
        "midlayer.self_attn.q_proj.weight": rnd(HEADS * d, 2 * H),
        "midlayer.self_attn.k_proj.weight": rnd(KV_HEADS * d, 2 * H),
        "midlayer.self_attn.v_proj.weight": rnd(KV_HEADS * d, 2 * H),
        "midlayer.self_attn.o_proj.weight": rnd(H, HEADS * d),
        "midlayer.mlp.gate_proj.weight": rnd(INTER, H),
        "midlayer.mlp.up_proj.weight": rnd(INTER, H),
        "midlayer.mlp.down_proj.weight": rnd(H, INTER),
        "norm.weight": torch.ones(H),
        "lm_head.weight": rnd(draft_vocab, H),
        "d2t": hot - torch.arange(draft_vocab),
        "t2d": t2d,
    }


def random_head(out: Path, seed: int = 0, draft_vocab: int = 200, vocab: int = VOCAB) -> Path:
    """A random head over a draft vocabulary of ``draft_vocab`` of the target's ``vocab``
    tokens (a target of hidden size 64, 4 heads, 2 KV heads, at least 2 layers)."""
    g = torch.Generator().manual_seed(seed + 1)
    hot = torch.randperm(vocab, generator=g)[:draft_vocab].sort().values
    return save_head(out, head_tensors(seed, draft_vocab, hot, vocab), draft_vocab=draft_vocab,
                     vocab=vocab)


def cycle_pair(out: Path, target_dir: Path, seed: int = 0) -> tuple[Path, Path]:
    """A target whose greedy next token is ``pi(last token)`` (``pi`` one cycle through the
    vocabulary: attention and MLP outputs zeroed, ``lm_head[pi(x)] = embed[x]``, embeddings
    drawn so that each is most similar to itself) and a head that predicts the token after
    next from the target's feature, ``pi(pi(x))``: a near-identity layer (``o_proj`` and
    ``down_proj`` zero, ``fc`` averaging three copies of the embedding-level hidden state),
    ``lm_head`` over a permuted draft vocabulary (a non-trivial ``d2t``). Its first draft is
    always right and, fed its own hidden state, its later drafts repeat the first: exactly one
    draft is accepted per verify."""
    from safetensors.torch import load_file

    g = torch.Generator().manual_seed(seed)
    while True:
        embed = torch.randn(VOCAB, H, generator=g) * 0.08
        sims = embed @ embed.T
        if bool((sims.argmax(dim=1) == torch.arange(VOCAB)).all()):
            break
    order = torch.randperm(VOCAB, generator=g)
    pi = torch.empty(VOCAB, dtype=torch.int64)
    pi[order] = order.roll(-1)  # one cycle: no fixed points, no 2-cycles
    inv = torch.empty_like(pi)
    inv[pi] = torch.arange(VOCAB)

    tgt = out / "target"
    shutil.copytree(target_dir, tgt)
    weights = load_file(str(tgt / "model.safetensors"))
    for name in weights:
        if name.endswith(("o_proj.weight", "down_proj.weight")):
            weights[name] = torch.zeros_like(weights[name])
    weights["model.embed_tokens.weight"] = embed
    weights["lm_head.weight"] = embed[inv]  # row y = embed[pi^-1(y)]
    save_file(weights, str(tgt / "model.safetensors"))

    hot = torch.randperm(VOCAB, generator=g)  # draft token i is target token hot[i]
    inv2 = inv[inv]
    t = head_tensors(seed, VOCAB, hot)
    eye = torch.eye(H) / 3
    t["fc.weight"] = torch.cat([eye, eye, eye], dim=1)
    t["midlayer.self_attn.o_proj.weight"].zero_()
    t["midlayer.mlp.down_proj.weight"].zero_()
    t["lm_head.weight"] = embed[inv2[hot]]  # row i = embed[pi^-2(hot[i])]
    return tgt, save_head(out / "head", t, layer_ids=(0, 0, 0))
