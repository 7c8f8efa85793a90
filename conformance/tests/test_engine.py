"""Tier engine (provisional in this release): end-to-end greedy generation of tiny random
Llama models, and of a tiny Qwen3-MoE model (through the platform's MoE backend), on the
platform equals the CPU reference platform token for token (a first
difference is allowed only at a near tie of the fp32 reference, within the dtype's logprob
tolerance; later tokens then continue from another prefix and are not compared), and the
chosen tokens' logprobs are close. Prompts are token ids (no tokenizer needed)."""

from __future__ import annotations

import pytest
import torch
from anyware_conformance.inputs import DTYPES

MODELS = {  # name: LlamaConfig overrides
    "llama-gqa": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2),
    "llama-mha-d64": dict(hidden_size=128, intermediate_size=192, num_hidden_layers=2,
                          num_attention_heads=2, num_key_value_heads=2),
}
MOE_MODELS = {  # name: Qwen3MoeConfig overrides (16 experts, top-4, renormalised)
    "qwen3-moe-e16-k4": dict(hidden_size=64, intermediate_size=128, moe_intermediate_size=48,
                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                             head_dim=16, num_experts=16, num_experts_per_tok=4,
                             norm_topk_prob=True),
}


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    paths = {}
    specs = [(n, "Llama", o) for n, o in MODELS.items()] + [(n, "Qwen3Moe", o) for n, o in MOE_MODELS.items()]
    for i, (name, family, overrides) in enumerate(specs):
        torch.manual_seed(1234 + i)
        cfg = getattr(transformers, f"{family}Config")(
            vocab_size=256, max_position_embeddings=512, rms_norm_eps=1e-5,
            tie_word_embeddings=False, **overrides)
        model = getattr(transformers, f"{family}ForCausalLM")(cfg)
        with torch.no_grad():  # spread logits so greedy choices are far from ties
            model.lm_head.weight.mul_(8.0)
        path = tmp_path_factory.mktemp(name)
        model.save_pretrained(str(path), safe_serialization=True)
        paths[name] = str(path)
    return paths


def _generate(path: str, platform: str, dtype: str, page_size: int | None, prompts,
              top: int = 0, attention_backend: str | None = None, **options):
    try:
        from anyware import Engine, SamplingParams
    except ImportError as exc:
        pytest.skip(f"provisional: the engine is not available in this install: {exc}")
    engine = Engine(model=path, platform=platform, dtype=dtype, page_size=page_size,
                    kv_cache_bytes=64 << 20, max_running_requests=4, chunked_prefill_size=32,
                    attention_backend=attention_backend, **options)
    try:
        outs = engine.generate(prompts, SamplingParams(max_new_tokens=12, temperature=0,
                                                       logprobs=top, ignore_eos=True))
    finally:
        engine.shutdown()
    return [(list(o.outputs[0].token_ids), [lp.logprob for lp in o.outputs[0].logprobs or []],
             [list(lp.top) for lp in o.outputs[0].logprobs or []]) for o in outs]


@pytest.mark.anyware(tier="engine", capability="engine.greedy", needs=("dtype",), provisional=True)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("model", list(MODELS))
def test_greedy_generation_matches_reference(harness, caps, conf, tiny_models, model, dtype):
    _check_greedy(harness, caps, conf, tiny_models, model, dtype)


@pytest.mark.anyware(tier="engine", capability="engine.moe", needs=("dtype", "moe"), provisional=True)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("model", list(MOE_MODELS))
def test_moe_generation_matches_reference(harness, caps, conf, tiny_models, model, dtype):
    _check_greedy(harness, caps, conf, tiny_models, model, dtype)


def _check_greedy(harness, caps, conf, tiny_models, model, dtype):
    g = torch.Generator().manual_seed(len(model) * 7919)  # same prompts for every dtype
    prompts = [torch.randint(3, 256, (n,), generator=g).tolist() for n in (7, 19, 1, 33)]
    page_size = caps.page_sizes[-1] if caps.page_sizes[-1] <= 64 else caps.page_sizes[0]
    got = _generate(tiny_models[model], harness.name, dtype, page_size, prompts,
                    attention_backend=harness.attention_backend)
    refs = harness.__dict__.setdefault("_engine_reference", {})
    if model not in refs:  # the CPU reference platform in fp32, once per model (top 3)
        refs[model] = _generate(tiny_models[model], "cpu", "float32", None, prompts, top=3)
    want = refs[model]
    for i, ((toks, lps, _), (ref_toks, ref_lps, ref_top)) in enumerate(zip(got, want)):
        n = conf.greedy_tokens(f"request {i} tokens", toks, ref_toks, ref_top, dtype=dtype)
        if lps[:n] and ref_lps[:n]:
            conf.close(f"request {i} logprobs", torch.tensor(lps[:n]), torch.tensor(ref_lps[:n]),
                       op="logprob", dtype=dtype)


@pytest.mark.anyware(tier="engine", capability="engine.fp8_linear",
                     needs=("quantization.fp8",), provisional=True)
@pytest.mark.parametrize("model", ["llama-gqa", "qwen3-moe-e16-k4"])
def test_fp8_generation_matches_reference(harness, caps, conf, tiny_models, model):
    """``--quantization fp8`` end to end (W8A8 linear layers, and the MoE experts where the
    platform's MoE backend runs fp8): greedy tokens and logprobs equal the CPU reference
    platform's fp8 run in fp32 (both quantise the same fp32 checkpoint the same way; the
    platform runs in fp32 where it declares it, so only summation order differs; near-tie rule
    as above)."""
    if model in MOE_MODELS and not caps.moe:
        pytest.skip("not applicable: moe not declared")
    dtype = "float32" if torch.float32 in caps.dtypes else "bfloat16"
    g = torch.Generator().manual_seed(4242)
    prompts = [torch.randint(3, 256, (n,), generator=g).tolist() for n in (9, 23, 2)]
    page_size = caps.page_sizes[-1] if caps.page_sizes[-1] <= 64 else caps.page_sizes[0]
    got = _generate(tiny_models[model], harness.name, dtype, page_size, prompts,
                    attention_backend=harness.attention_backend, quantization="fp8")
    want = _generate(tiny_models[model], "cpu", "float32", None, prompts, top=3,
                     quantization="fp8")
    for i, ((toks, lps, _), (ref_toks, ref_lps, ref_top)) in enumerate(zip(got, want)):
        n = conf.greedy_tokens(f"request {i} tokens", toks, ref_toks, ref_top, dtype=dtype)
        if lps[:n] and ref_lps[:n]:
            conf.close(f"request {i} logprobs", torch.tensor(lps[:n]), torch.tensor(ref_lps[:n]),
                       op="logprob", dtype=dtype)


@pytest.mark.anyware(tier="engine", capability="engine.speculative",
                     needs=("attention.verify",), provisional=True)
def test_speculative_loop_greedy_matches_reference(harness, caps, conf, tiny_models):
    """The whole speculative loop on the platform (prompt lookup drafts, VERIFY / MIXED
    forwards, acceptance on the device, KV truncation): greedy tokens equal the CPU fp32
    reference (near-tie rule as above), and drafts were verified and some accepted."""
    try:
        from anyware import Engine, SamplingParams
    except ImportError as exc:
        pytest.skip(f"provisional: the engine is not available in this install: {exc}")
    model, dtype = "llama-gqa", "float32" if torch.float32 in caps.dtypes else "bfloat16"
    prompts = [[5, 6, 7, 8, 9] * 4, [40, 41, 42, 43] * 3 + [40], [9, 200, 31]]
    page_size = caps.page_sizes[-1] if caps.page_sizes[-1] <= 64 else caps.page_sizes[0]
    engine = Engine(model=tiny_models[model], platform=harness.name, dtype=dtype,
                    page_size=page_size, kv_cache_bytes=64 << 20,
                    max_running_requests=4, chunked_prefill_size=32,
                    speculative_algorithm="ngram", speculative_num_draft_tokens=3,
                    speculative_auto_off=False, attention_backend=harness.attention_backend)
    try:
        outs = engine.generate(prompts, SamplingParams(max_new_tokens=12, temperature=0,
                                                       ignore_eos=True))
        stats = engine.stats()
    finally:
        engine.shutdown()
    want = _generate(tiny_models[model], "cpu", "float32", None, prompts, top=3)
    for i, (o, (ref_toks, _, ref_top)) in enumerate(zip(outs, want)):
        conf.greedy_tokens(f"request {i} tokens", list(o.outputs[0].token_ids), ref_toks,
                           ref_top, dtype=dtype)
    assert stats.verify_steps > 0 and stats.drafted_tokens > 0, stats


@pytest.mark.anyware(tier="engine", capability="engine.speculative_tree",
                     needs=("attention.verify", "attention.tree_mask"), provisional=True)
def test_tree_speculation_greedy_matches_reference(harness, caps, conf, tiny_models):
    """Tree drafts on the platform (n-gram tries: VERIFY forwards with a tree mask and
    per-node positions, tree acceptance on the device, the accepted path's KV copied to
    consecutive slots in the backend's layout): greedy tokens equal the CPU fp32 reference
    without speculation (near-tie rule as above), and drafts were verified."""
    try:
        from anyware import Engine, SamplingParams
    except ImportError as exc:
        pytest.skip(f"provisional: the engine is not available in this install: {exc}")
    model, dtype = "llama-gqa", "float32" if torch.float32 in caps.dtypes else "bfloat16"
    # repeated n-grams with different continuations, so the tries branch
    prompts = [[5, 6, 7, 5, 6, 8, 5, 6, 7] * 3, [40, 41, 42, 40, 41, 43] * 3 + [40], [9, 200, 31]]
    page_size = caps.page_sizes[-1] if caps.page_sizes[-1] <= 64 else caps.page_sizes[0]
    engine = Engine(model=tiny_models[model], platform=harness.name, dtype=dtype,
                    page_size=page_size, kv_cache_bytes=64 << 20,
                    max_running_requests=4, chunked_prefill_size=32,
                    speculative_algorithm="ngram", speculative_ngram_tree=True,
                    speculative_num_draft_tokens=6, speculative_auto_off=False,
                    attention_backend=harness.attention_backend,
                    # the accepted path's KV is copied in place between steps, which compiled
                    # (functional) programs do not keep: checked eagerly there
                    execution="eager" if caps.compiled_execution else "auto")
    try:
        outs = engine.generate(prompts, SamplingParams(max_new_tokens=12, temperature=0,
                                                       ignore_eos=True))
        stats = engine.stats()
    finally:
        engine.shutdown()
    want = _generate(tiny_models[model], "cpu", "float32", None, prompts, top=3)
    for i, (o, (ref_toks, _, ref_top)) in enumerate(zip(outs, want)):
        conf.greedy_tokens(f"request {i} tokens", list(o.outputs[0].token_ids), ref_toks,
                           ref_top, dtype=dtype)
    assert stats.verify_steps > 0 and stats.drafted_tokens > 0, stats


def _random_eagle3_head(out, target: str) -> str:
    """A random EAGLE-3 head for ``target`` in the published layout (config.json with
    architecture LlamaForCausalLMEagle3 + safetensors: fc, midlayer.*, norm, lm_head over a
    draft vocabulary of half the target's, d2t; the target's embedding is shared)."""
    import json
    from pathlib import Path

    from safetensors.torch import save_file

    tcfg = json.loads((Path(target) / "config.json").read_text())
    h, heads, kv = tcfg["hidden_size"], tcfg["num_attention_heads"], tcfg["num_key_value_heads"]
    inter, vocab, d = tcfg["intermediate_size"], tcfg["vocab_size"], h // heads
    draft_vocab = vocab // 2
    g = torch.Generator().manual_seed(7)

    def rnd(*shape):
        return torch.randn(*shape, generator=g) * 0.08

    hot = torch.randperm(vocab, generator=g)[:draft_vocab].sort().values
    tensors = {"fc.weight": rnd(h, 3 * h), "norm.weight": torch.ones(h),
               "lm_head.weight": rnd(draft_vocab, h) * 8.0, "d2t": hot - torch.arange(draft_vocab)}
    for n in ("input_layernorm", "hidden_norm", "post_attention_layernorm"):
        tensors[f"midlayer.{n}.weight"] = torch.ones(h)
    for n, rows in (("q", heads * d), ("k", kv * d), ("v", kv * d)):
        tensors[f"midlayer.self_attn.{n}_proj.weight"] = rnd(rows, 2 * h)
    tensors["midlayer.self_attn.o_proj.weight"] = rnd(h, heads * d)
    tensors["midlayer.mlp.gate_proj.weight"] = rnd(inter, h)
    tensors["midlayer.mlp.up_proj.weight"] = rnd(inter, h)
    tensors["midlayer.mlp.down_proj.weight"] = rnd(h, inter)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLMEagle3"], "hidden_size": h, "intermediate_size": inter,
        "num_hidden_layers": 1, "num_attention_heads": heads, "num_key_value_heads": kv,
        "vocab_size": vocab, "draft_vocab_size": draft_vocab, "rms_norm_eps": 1e-5,
        "max_position_embeddings": tcfg["max_position_embeddings"],
        "eagle_config": {"eagle_aux_hidden_state_layer_ids": [-1, 0, 0]}}))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / "model.safetensors"))
    return str(out)


@pytest.mark.anyware(tier="engine", capability="engine.speculative",
                     needs=("attention.verify",), provisional=True)
def test_eagle3_loop_greedy_matches_reference(harness, caps, conf, tiny_models, tmp_path):
    """The EAGLE-3 loop on the platform (the target's hidden states captured inside its
    forwards, the head's catch-up and draft forwards in its own KV pool, VERIFY forwards): a
    random head changes nothing — greedy tokens equal the CPU fp32 reference without
    speculation (near-tie rule as above) — and drafts were verified."""
    try:
        from anyware import Engine, SamplingParams
    except ImportError as exc:
        pytest.skip(f"provisional: the engine is not available in this install: {exc}")
    model, dtype = "llama-gqa", "float32" if torch.float32 in caps.dtypes else "bfloat16"
    head = _random_eagle3_head(tmp_path / "head", tiny_models[model])
    prompts = [[5, 6, 7, 8, 9] * 4, [40, 41, 42, 43] * 3 + [40], [9, 200, 31]]
    page_size = caps.page_sizes[-1] if caps.page_sizes[-1] <= 64 else caps.page_sizes[0]
    engine = Engine(model=tiny_models[model], platform=harness.name, dtype=dtype,
                    page_size=page_size, kv_cache_bytes=64 << 20,
                    max_running_requests=4, chunked_prefill_size=32,
                    speculative_algorithm="eagle3", speculative_draft_model=head,
                    speculative_num_draft_tokens=3, speculative_auto_off=False,
                    attention_backend=harness.attention_backend,
                    # the head's features are written in place inside the target's forward,
                    # which compiled (functional) programs do not keep: the engine refuses
                    # EAGLE-3 with them, so a compiling platform is checked eagerly
                    execution="eager" if caps.compiled_execution else "auto")
    try:
        outs = engine.generate(prompts, SamplingParams(max_new_tokens=12, temperature=0,
                                                       ignore_eos=True))
        stats = engine.stats()
    finally:
        engine.shutdown()
    want = _generate(tiny_models[model], "cpu", "float32", None, prompts, top=3)
    for i, (o, (ref_toks, _, ref_top)) in enumerate(zip(outs, want)):
        conf.greedy_tokens(f"request {i} tokens", list(o.outputs[0].token_ids), ref_toks,
                           ref_top, dtype=dtype)
    assert stats.verify_steps > 0 and stats.drafted_tokens > 0, stats
