"""MoE models (Qwen3-MoE, Mixtral) give greedy tokens identical to transformers (fp32, CPU),
over several expert counts, top-k 1/2/8, dense layers between sparse ones and skewed routing;
the loader packs per-expert checkpoint tensors into the backend's layout (also a padded one)."""

import json

import pytest
import torch
from anyware import Engine, SamplingParams
from anyware.model import ModelConfig
from anyware.model.config import ModelConfigError

from tests.engine.conftest import ENGINE_DEFAULTS, hf_references
from tests.engine.tiny_models import MOE_ARCHS, random_prompts

LENGTHS = (5, 17, 40, 9)
NEW = 16


@pytest.fixture(scope="module")
def moe_refs(model_dir):
    return hf_references(model_dir, LENGTHS, NEW)


def _generate(path, prompts, **kw):
    with Engine(str(path), **{**ENGINE_DEFAULTS, **kw}) as engine:
        outs = engine.generate(prompts, SamplingParams(max_new_tokens=NEW, temperature=0,
                                                       ignore_eos=True))
        engine.check_invariants()
    return [o.outputs[0].token_ids for o in outs]


@pytest.mark.parametrize("arch", list(MOE_ARCHS))
def test_moe_greedy_matches_transformers(model_dir, moe_refs, arch):
    prompts, expected, _ = moe_refs(arch)
    assert _generate(model_dir(arch), prompts, page_size=16) == expected


def test_moe_chunked_prefill_matches(model_dir, moe_refs):
    prompts, expected, _ = moe_refs("qwen3-moe-k8")
    assert _generate(model_dir("qwen3-moe-k8"), prompts, page_size=8,
                     chunked_prefill_size=7) == expected


def test_config_reads_moe_fields(model_dir):
    q = ModelConfig.from_dir(model_dir("qwen3-moe-k8"))
    assert (q.num_experts, q.num_experts_per_tok, q.moe_intermediate_size) == (16, 8, 40)
    assert q.norm_topk_prob and [q.is_sparse_layer(i) for i in range(3)] == [False, True, False]
    m = ModelConfig.from_dir(model_dir("mixtral"))
    assert (m.num_experts, m.num_experts_per_tok, m.moe_intermediate_size) == (4, 2, 40)
    assert m.norm_topk_prob and all(m.is_sparse_layer(i) for i in range(2))


def test_missing_expert_is_named(model_dir, tmp_path):
    """A checkpoint without one expert's projection fails at load, naming it."""
    from safetensors.torch import load_file, save_file

    src = model_dir("mixtral")
    for f in src.iterdir():
        if f.suffix != ".safetensors":
            (tmp_path / f.name).write_bytes(f.read_bytes())
    tensors = load_file(str(src / "model.safetensors"))
    del tensors["model.layers.1.block_sparse_moe.experts.3.w3.weight"]
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(ModelConfigError, match="expert 3 up"):
        Engine(str(tmp_path), **ENGINE_DEFAULTS)


def test_padded_weight_layout_gives_same_tokens(model_dir, moe_refs, monkeypatch):
    """A backend that asks for the intermediate size padded to 64 (zeros) is exact."""
    from anyware.kernels.reference import ReferenceMoEBackend
    from anyware.plugin import MoEWeightLayout

    monkeypatch.setattr(ReferenceMoEBackend, "weight_layout",
                        lambda self: MoEWeightLayout(intermediate_multiple=64))
    prompts, expected, _ = moe_refs("mixtral")
    assert _generate(model_dir("mixtral"), prompts, page_size=16) == expected


def test_transformers5_fused_expert_tensors_load(model_dir, moe_refs, tmp_path):
    """Checkpoints with stacked ``experts.gate_up_proj``/``down_proj`` load the same."""
    from safetensors.torch import load_file, save_file

    src = model_dir("qwen3-moe")
    for f in src.iterdir():
        if f.suffix != ".safetensors":
            (tmp_path / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((src / "config.json").read_text())
    tensors = load_file(str(src / "model.safetensors"))
    fused = {}
    for layer in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{layer}.mlp.experts"
        if f"{pre}.0.gate_proj.weight" not in tensors:
            continue
        e = cfg.get("num_experts") or cfg["num_local_experts"]
        take = [[tensors.pop(f"{pre}.{i}.{p}.weight") for i in range(e)]
                for p in ("gate_proj", "up_proj", "down_proj")]
        fused[f"{pre}.gate_up_proj"] = torch.cat([torch.stack(take[0]), torch.stack(take[1])], 1)
        fused[f"{pre}.down_proj"] = torch.stack(take[2])
    save_file({**tensors, **fused}, str(tmp_path / "model.safetensors"))
    prompts, expected, _ = moe_refs("qwen3-moe")
    assert _generate(tmp_path, prompts, page_size=16) == expected


def test_dummy_weights_from_config_only(tmp_path, monkeypatch):
    """``--load-format dummy`` on a directory with only a config.json (as the presets do):
    random experts in a padded layout keep their padding zero and generation is reproducible."""
    from anyware.kernels.reference import ReferenceMoEBackend
    from anyware.model.moe import FusedExperts
    from anyware.plugin import MoEWeightLayout

    cfg = dict(architectures=["Qwen3MoeForCausalLM"], hidden_size=64, intermediate_size=96,
               moe_intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, head_dim=16, num_experts=8, num_experts_per_tok=2,
               norm_topk_prob=True, vocab_size=300, max_position_embeddings=256)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    prompts = random_prompts((6, 11))
    runs = []
    monkeypatch.setattr(ReferenceMoEBackend, "weight_layout",
                        lambda self: MoEWeightLayout(intermediate_multiple=32))
    for _ in range(2):
        with Engine(str(tmp_path), load_format="dummy", **ENGINE_DEFAULTS) as engine:
            experts = [m for m in engine.core.worker.model.modules() if isinstance(m, FusedExperts)]
            assert len(experts) == 2 and experts[0].w13.shape == (8, 128, 64)
            assert not experts[0].w13[:, 40:64].any() and not experts[0].w2[:, :, 40:].any()
            outs = engine.generate(prompts, SamplingParams(max_new_tokens=6, temperature=0,
                                                           ignore_eos=True))
        runs.append([o.outputs[0].token_ids for o in outs])
    assert runs[0] == runs[1] and all(len(t) == 6 for t in runs[0])
