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
    dict(page_size=4, kv_cache_bytes=64 << 10),  # tight: requests are retracted
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
