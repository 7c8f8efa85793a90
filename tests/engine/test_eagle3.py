"""EAGLE-3 speculative decoding through the engine: a random head (published checkpoint
layout, draft vocabulary smaller than the target's) gives greedy output token-identical to no
speculation across page sizes, chunked prefill, unmixed batches, retraction and the radix
cache; a head built to predict the target's next-but-one token exactly has exactly one draft
per verify accepted (so the target's hidden states reach the head at the right positions);
bad heads are start-up errors that say what to change."""

import pytest
from anyware import Engine, SamplingParams
from anyware.model.config import ModelConfigError

from tests.engine.conftest import ENGINE_DEFAULTS
from tests.engine.eagle3_heads import cycle_pair, random_head, save_head
from tests.engine.test_speculative import PARAMS, prompts_with_repeats, run
from tests.engine.tiny_models import random_prompts


@pytest.fixture(scope="module")
def heads(model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("eagle3")
    return {"random": random_head(root / "random"),
            "cycle": cycle_pair(root / "cycle", model_dir("llama"))}


@pytest.mark.parametrize("setting", [
    dict(page_size=4),
    dict(page_size=16, chunked_prefill_size=8, mixed_batches=False),
    dict(page_size=4, chunked_prefill_size=16, disable_radix_cache=True),
    # tight, and no output reserve at admission: requests are retracted
    dict(page_size=4, kv_cache_bytes=64 << 10, schedule_conservativeness=0),
], ids=["p4", "p16-chunk8-unmixed", "p4-chunk16-nocache", "p4-retract"])
def test_greedy_output_identical_to_no_speculation(model_dir, heads, setting):
    model = model_dir("llama")
    prompts = prompts_with_repeats()
    base, base_c = run(model, prompts, PARAMS, waves=2, **setting)
    got, c = run(model, prompts, PARAMS, waves=2, **setting, speculative_algorithm="eagle3",
                 speculative_draft_model=str(heads["random"]), speculative_num_draft_tokens=3)
    assert got == base
    assert c.verify_steps > 0 and c.drafted_tokens > 0
    if "kv_cache_bytes" in setting:
        assert c.retractions > 0 and base_c.retractions > 0


@pytest.mark.parametrize("setting", [dict(page_size=4), dict(page_size=8, chunked_prefill_size=8)],
                         ids=["p4", "p8-chunk8"])
def test_head_that_predicts_the_target_has_its_first_draft_accepted(heads, setting):
    target, head = heads["cycle"]
    prompts = random_prompts((5, 17, 9), seed=5)
    params = SamplingParams(max_new_tokens=22, temperature=0, ignore_eos=True)
    base, _ = run(target, prompts, params, **setting)
    got, c = run(target, prompts, params, **setting, speculative_algorithm="eagle3",
                 speculative_draft_model=str(head), speculative_num_draft_tokens=4)
    assert got == base
    assert c.verify_steps > 0 and c.drafted_tokens > c.verify_steps
    assert c.accepted_tokens == c.verify_steps  # draft 1 always right, draft 2 always wrong


def test_sampling_with_a_head_is_identical_seed_for_seed(model_dir, heads):
    """temperature > 0 with 'exact' acceptance, n = 2 samples per prompt: output identical to
    no speculation seed for seed (the cycle head's first drafts are right, so drafts are kept
    at temperature > 0 too)."""
    target, head = heads["cycle"]
    prompts = random_prompts((7, 12), seed=6)
    params = SamplingParams(max_new_tokens=16, temperature=0.2, seed=3, n=2, ignore_eos=True)
    base, _ = run(target, prompts, params, page_size=4)
    got, c = run(target, prompts, params, page_size=4, speculative_algorithm="eagle3",
                 speculative_draft_model=str(head), speculative_auto_off=False)
    assert got == base and c.verify_steps > 0 and c.accepted_tokens > 0


def test_other_exporters_key_names_load_the_same_head(model_dir, heads, tmp_path):
    """``model.`` prefixes and ``midlayers.0.`` / ``layers.0.`` for ``midlayer.`` load the
    same weights: identical drafts, so identical counters."""
    import json

    from safetensors.torch import load_file, save_file

    model, head = model_dir("llama"), heads["random"]
    weights = load_file(str(head / "model.safetensors"))
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    (renamed / "config.json").write_text((head / "config.json").read_text())
    names = {k: "model." + k.replace("midlayer.", "layers.0." if "mlp" in k else "midlayers.0.")
             for k in weights}
    save_file({names[k]: v for k, v in weights.items()}, str(renamed / "model.safetensors"))
    assert json.loads((renamed / "config.json").read_text())["num_hidden_layers"] == 1
    prompts = random_prompts((9, 4), seed=12)
    params = SamplingParams(max_new_tokens=12, temperature=0, ignore_eos=True)
    spec = dict(speculative_algorithm="eagle3", speculative_auto_off=False, page_size=4)
    a, ca = run(model, prompts, params, speculative_draft_model=str(head), **spec)
    b, cb = run(model, prompts, params, speculative_draft_model=str(renamed), **spec)
    assert a == b and ca == cb and ca.verify_steps > 0


def test_bad_heads_are_start_up_errors(model_dir, heads, tmp_path):
    model = str(model_dir("llama"))
    with pytest.raises(ValueError, match="eagle3"):  # a head given as a draft model
        Engine(model, **ENGINE_DEFAULTS, speculative_algorithm="draft",
               speculative_draft_model=str(heads["random"]))
    with pytest.raises(ValueError, match="LlamaForCausalLMEagle3"):  # a model given as a head
        Engine(model, **ENGINE_DEFAULTS, speculative_algorithm="eagle3",
               speculative_draft_model=model)
    import json

    bad = tmp_path / "bad"
    save_head(bad, {}, layer_ids=(0, 5, 1))
    with pytest.raises(ModelConfigError, match="eagle_aux_hidden_state_layer_ids"):
        Engine(model, **ENGINE_DEFAULTS, speculative_algorithm="eagle3",
               speculative_draft_model=str(bad))
    cfg = json.loads((bad / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLMEagle3"]


def reference_head(target, head_dir, tokens):
    """The head in plain torch from the checkpoint's tensors and transformers' hidden states
    of the target (no KV cache): returns ``(logits_after, hot)``, where ``logits_after(path)``
    are the head's draft-vocabulary logits for the token after ``tokens + path`` (each path
    token fed with the head's own hidden state of the position before, as EAGLE-3 drafts) and
    ``hot`` maps draft to target tokens."""
    import json

    import torch
    import torch.nn.functional as F
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    cfg = json.loads((head_dir / "config.json").read_text())
    w = load_file(str(head_dir / "model.safetensors"))
    model = AutoModelForCausalLM.from_pretrained(str(target), dtype=torch.float32).eval()
    with torch.no_grad():
        hs = model(torch.tensor([tokens]), output_hidden_states=True).hidden_states
    ids = cfg["eagle_config"]["eagle_aux_hidden_state_layer_ids"]
    feats = torch.cat([hs[i + 1][0] for i in ids], -1) @ w["fc.weight"].T
    embed = model.model.embed_tokens.weight.detach()
    hot = w["d2t"] + torch.arange(w["d2t"].shape[0])
    heads, kv_heads = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d, eps = cfg["hidden_size"] // heads, cfg["rms_norm_eps"]

    def rms(x, name):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w[name]

    def rope(x):  # [n, heads, d], neox halves
        n = x.shape[0]
        inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, d, 2).float() / d))
        ang = torch.arange(n).float()[:, None] * inv[None]
        cos, sin = torch.cat([ang.cos()] * 2, -1)[:, None], torch.cat([ang.sin()] * 2, -1)[:, None]
        x1, x2 = x[..., : d // 2], x[..., d // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    def forward(toks, hidden):
        n, p = len(toks), "midlayer."
        x = torch.cat([rms(embed[toks], p + "input_layernorm.weight"),
                       rms(hidden, p + "hidden_norm.weight")], -1)
        q = rope((x @ w[p + "self_attn.q_proj.weight"].T).view(n, heads, d))
        kk = rope((x @ w[p + "self_attn.k_proj.weight"].T).view(n, kv_heads, d))
        v = (x @ w[p + "self_attn.v_proj.weight"].T).view(n, kv_heads, d)
        rep = heads // kv_heads
        kk, v = kk.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        att = F.scaled_dot_product_attention(q.transpose(0, 1), kk.transpose(0, 1),
                                             v.transpose(0, 1), is_causal=True)
        r = att.transpose(0, 1).reshape(n, -1) @ w[p + "self_attn.o_proj.weight"].T + hidden
        y = rms(r, p + "post_attention_layernorm.weight")
        r = (F.silu(y @ w[p + "mlp.gate_proj.weight"].T) * (y @ w[p + "mlp.up_proj.weight"].T)
             ) @ w[p + "mlp.down_proj.weight"].T + r
        return rms(r, "norm.weight") @ w["lm_head.weight"].T, r

    def logits_after(path):
        toks, hidden = list(tokens[1:]), feats[: len(tokens) - 1]
        with torch.no_grad():
            for tok in path:
                _, out = forward(toks, hidden)
                toks.append(tok)
                hidden = torch.cat([hidden, out[-1:]])
            return forward(toks, hidden)[0][-1]

    return logits_after, hot


def _reference_drafts(target, head_dir, tokens, k):
    """The head's ``k`` greedy drafts after ``tokens`` (``reference_head``)."""
    logits_after, hot = reference_head(target, head_dir, tokens)
    drafts = []
    for _ in range(k):
        drafts.append(int(hot[logits_after(drafts).argmax()]))
    return drafts


def test_drafts_match_a_plain_torch_reference(model_dir, heads):
    """Every proposal the engine's head makes equals a plain-torch EAGLE-3 forward over the
    request's tokens (transformers' hidden states of the target as features)."""
    model, head = model_dir("llama"), heads["random"]
    seen = []
    with Engine(str(model), **ENGINE_DEFAULTS, page_size=4, chunked_prefill_size=8,
                speculative_algorithm="eagle3", speculative_draft_model=str(head),
                speculative_num_draft_tokens=3) as engine:
        def record(core):
            drafter = core.speculator.drafter
            propose = drafter.propose

            def recorded(request, max_tokens):
                out = propose(request, max_tokens)
                if out:
                    seen.append((request.tokens(0, request.seq_len), out))
                return out
            drafter.propose = recorded
        engine._loop.call(record)
        engine.generate(random_prompts((6, 13), seed=8),
                        SamplingParams(max_new_tokens=9, temperature=0, ignore_eos=True))
    assert len(seen) >= 6
    for tokens, drafts in seen:
        assert drafts == _reference_drafts(model, head, tokens, len(drafts))
