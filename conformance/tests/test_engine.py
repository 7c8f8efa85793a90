"""Tier engine (provisional in this release): end-to-end greedy generation of tiny random
Llama models on the platform equals the CPU reference platform token for token (a first
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


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    paths = {}
    for i, (name, overrides) in enumerate(MODELS.items()):
        torch.manual_seed(1234 + i)
        cfg = transformers.LlamaConfig(vocab_size=256, max_position_embeddings=512,
                                       rms_norm_eps=1e-5, tie_word_embeddings=False, **overrides)
        model = transformers.LlamaForCausalLM(cfg)
        with torch.no_grad():  # spread logits so greedy choices are far from ties
            model.lm_head.weight.mul_(8.0)
        path = tmp_path_factory.mktemp(name)
        model.save_pretrained(str(path), safe_serialization=True)
        paths[name] = str(path)
    return paths


def _generate(path: str, platform: str, dtype: str, page_size: int | None, prompts,
              top: int = 0):
    try:
        from anyware import Engine, SamplingParams
    except ImportError as exc:
        pytest.skip(f"provisional: the engine is not available in this install: {exc}")
    engine = Engine(model=path, platform=platform, dtype=dtype, page_size=page_size,
                    kv_cache_bytes=64 << 20, max_running_requests=8, chunked_prefill_size=64)
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
    g = torch.Generator().manual_seed(len(model) * 7919)  # same prompts for every dtype
    prompts = [torch.randint(3, 256, (n,), generator=g).tolist() for n in (7, 19, 1, 33)]
    page_size = caps.page_sizes[-1] if caps.page_sizes[-1] <= 64 else caps.page_sizes[0]
    got = _generate(tiny_models[model], harness.name, dtype, page_size, prompts)
    refs = harness.__dict__.setdefault("_engine_reference", {})
    if model not in refs:  # the CPU reference platform in fp32, once per model (top 3)
        refs[model] = _generate(tiny_models[model], "cpu", "float32", None, prompts, top=3)
    want = refs[model]
    for i, ((toks, lps, _), (ref_toks, ref_lps, ref_top)) in enumerate(zip(got, want)):
        n = conf.greedy_tokens(f"request {i} tokens", toks, ref_toks, ref_top, dtype=dtype)
        if lps[:n] and ref_lps[:n]:
            conf.close(f"request {i} logprobs", torch.tensor(lps[:n]), torch.tensor(ref_lps[:n]),
                       op="logprob", dtype=dtype)
