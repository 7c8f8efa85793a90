"""Prompt logprobs (``SamplingParams.prompt_logprobs``) equal transformers' log-softmax at the
same positions (fp32, CPU: within 1e-4), whole or chunked, with the radix cache holding a
shared prefix, for ``n > 1`` and for prefill-only requests (``max_new_tokens=0``); requests
that do not ask are unaffected."""

import pytest
import torch
from anyware import Engine, InvalidRequestError, SamplingParams

from tests.engine.conftest import ENGINE_DEFAULTS
from tests.engine.tiny_models import hf_greedy, random_prompts

TOL = 1e-4
K = 3


@pytest.fixture(scope="module")
def hf_model(model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(model_dir("llama")),
                                                dtype=torch.float32).eval()


def reference(model, prompt: list[int]) -> torch.Tensor:
    """log-softmax of transformers' logits at every prompt position, ``[P, V]``."""
    with torch.no_grad():
        return torch.log_softmax(model(torch.tensor([prompt])).logits[0].float(), dim=-1)


def check(model, prompt, entries, k=K):
    """``entries`` (engine ``prompt_logprobs``) against the reference."""
    assert len(entries) == len(prompt) and entries[0] is None
    ref = reference(model, prompt)
    for pos, e in enumerate(entries[1:]):
        want = ref[pos]
        assert e.token_id == prompt[pos + 1]
        assert abs(e.logprob - want[prompt[pos + 1]].item()) < TOL
        top_v, top_i = want.topk(k)
        assert [t for t, _ in e.top] == top_i.tolist()
        assert all(abs(v - r) < TOL for (_, v), r in zip(e.top, top_v.tolist()))


@pytest.mark.parametrize("chunk", [2048, 7])
def test_prompt_logprobs_match_transformers(model_dir, hf_model, chunk):
    """A batch mixing prefill-only requests, generating ones and ones that do not ask; with
    ``chunk=7`` every prompt but the first spans several chunks."""
    prompts = random_prompts((5, 17, 40, 23))
    plain_ref, _ = hf_greedy(model_dir("llama"), [prompts[3]], 6)
    params = [SamplingParams(max_new_tokens=0, prompt_logprobs=K),
              SamplingParams(max_new_tokens=6, temperature=0, ignore_eos=True,
                             prompt_logprobs=K, logprobs=1),
              SamplingParams(max_new_tokens=0, prompt_logprobs=K),
              SamplingParams(max_new_tokens=6, temperature=0, ignore_eos=True)]
    with Engine(str(model_dir("llama")), page_size=4, chunked_prefill_size=chunk,
                **ENGINE_DEFAULTS) as engine:
        outs = engine.generate(prompts, params)
        engine.check_invariants()
    for out, prompt, p in zip(outs[:3], prompts, params):
        check(hf_model, prompt, out.prompt_logprobs)
        comp = out.outputs[0]
        assert len(comp.token_ids) == p.max_new_tokens
        assert comp.finish_reason == "length"
        assert out.usage.completion_tokens == p.max_new_tokens
    assert outs[0].outputs[0].text == ""
    assert outs[3].prompt_logprobs is None
    assert outs[3].outputs[0].token_ids == plain_ref[0]
    gen = outs[1].outputs[0]  # the first generated token follows the last prompt position
    assert len(gen.logprobs) == 6


def test_radix_cache_shared_prefix_recomputed(model_dir, hf_model):
    """A prefix another request left in the cache has no logits: a request asking for
    prompt logprobs recomputes it (exact values, no cached tokens); plain requests, and the
    ``n > 1`` siblings of one that asks (only the first child computes them), still reuse it."""
    prefix = random_prompts([32], seed=5)[0]
    a, b, c, d = (prefix + q for q in random_prompts([6, 9, 7, 5], seed=6))
    with Engine(str(model_dir("llama")), page_size=4, **ENGINE_DEFAULTS) as engine:
        engine.generate([a], SamplingParams(max_new_tokens=2, temperature=0))
        out = engine.generate([b], SamplingParams(max_new_tokens=2, temperature=0,
                                                  prompt_logprobs=K))[0]
        check(hf_model, b, out.prompt_logprobs)
        assert out.usage.cached_tokens == 0
        plain = engine.generate([c], SamplingParams(max_new_tokens=1, temperature=0))[0]
        assert plain.usage.cached_tokens >= 32
        two = engine.generate([d], SamplingParams(max_new_tokens=2, temperature=0, n=2,
                                                  prompt_logprobs=K))[0]
        check(hf_model, d, two.prompt_logprobs)
        engine.check_invariants()
    assert two.outputs[0].token_ids == two.outputs[1].token_ids


def test_stream_carries_prompt_logprobs_once(model_dir, hf_model):
    prompt = random_prompts([30], seed=8)[0]
    with Engine(str(model_dir("llama")), page_size=4, chunked_prefill_size=8,
                **ENGINE_DEFAULTS) as engine:
        outs = list(engine.stream(prompt, SamplingParams(max_new_tokens=3, temperature=0,
                                                         prompt_logprobs=0)))
    carrying = [o.prompt_logprobs for o in outs if o.prompt_logprobs is not None]
    assert len(carrying) == 1
    check(hf_model, prompt, carrying[0], k=0)
    assert sum(len(o.outputs[0].token_ids) for o in outs) == 3


def test_params_validation():
    assert SamplingParams(max_new_tokens=0).max_new_tokens == 0
    for bad in (dict(max_new_tokens=-1), dict(prompt_logprobs=21), dict(prompt_logprobs=-1),
                dict(prompt_logprobs=1.5)):
        with pytest.raises(InvalidRequestError):
            SamplingParams(**bad)
