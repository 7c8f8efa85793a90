"""The offline API: sampling semantics, stops, streaming, asyncio, abort, errors."""

import asyncio

import pytest
from anyware import Engine, InvalidRequestError, SamplingParams

from tests.engine.conftest import ENGINE_DEFAULTS
from tests.engine.tiny_models import random_prompts


@pytest.fixture(scope="module")
def engine(model_dir):
    with Engine(str(model_dir("llama")), page_size=8, **ENGINE_DEFAULTS) as e:
        yield e


def test_seeded_sampling_is_reproducible_and_batch_independent(engine):
    prompts = random_prompts((7, 12, 30, 4), seed=5)
    p = SamplingParams(max_new_tokens=16, temperature=1.0, top_p=0.9, top_k=50, seed=1234,
                       ignore_eos=True)
    alone = engine.generate([prompts[1]], p)[0].outputs[0].token_ids
    mixed = engine.generate(prompts, [SamplingParams(max_new_tokens=9, temperature=0.7,
                                                     seed=s, ignore_eos=True) for s in (1, 2, 3)]
                            [:1] + [p] + [SamplingParams(max_new_tokens=20, temperature=1.3,
                                                         ignore_eos=True)] * 2)
    assert mixed[1].outputs[0].token_ids == alone
    again = engine.generate([prompts[1]], p)[0].outputs[0].token_ids
    assert again == alone


def test_unseeded_sampling_varies_and_n_gives_distinct_samples(engine):
    prompt = random_prompts((10,), seed=9)[0]
    out = engine.generate([prompt], SamplingParams(max_new_tokens=12, temperature=1.5, n=4,
                                                   ignore_eos=True))[0]
    assert len(out.outputs) == 4 and [c.index for c in out.outputs] == [0, 1, 2, 3]
    assert len({tuple(c.token_ids) for c in out.outputs}) > 1
    assert out.usage.completion_tokens == 48 and out.usage.prompt_tokens == 10


def test_top_k_one_equals_greedy(engine):
    prompt = random_prompts((20,), seed=3)[0]
    greedy = engine.generate([prompt], SamplingParams(max_new_tokens=10, temperature=0,
                                                      ignore_eos=True))[0].outputs[0].token_ids
    topk1 = engine.generate([prompt], SamplingParams(max_new_tokens=10, temperature=1.0, top_k=1,
                                                     ignore_eos=True))[0].outputs[0].token_ids
    assert greedy == topk1


def test_stop_token_ids_max_tokens_and_eos(engine):
    prompt = random_prompts((15,), seed=4)[0]
    base = engine.generate([prompt], SamplingParams(max_new_tokens=12, temperature=0,
                                                    ignore_eos=True))[0].outputs[0]
    assert base.finish_reason == "length" and len(base.token_ids) == 12
    stop_at = base.token_ids[5]
    first = base.token_ids.index(stop_at)
    out = engine.generate([prompt], SamplingParams(max_new_tokens=12, temperature=0,
                                                   stop_token_ids=[stop_at]))[0].outputs[0]
    assert out.token_ids == base.token_ids[: first + 1]
    assert out.finish_reason == "stop" and out.stop_reason == stop_at


def test_stop_strings_truncate_text(engine):
    prompt = random_prompts((15,), seed=6)[0]
    base = engine.generate([prompt], SamplingParams(max_new_tokens=20, temperature=0,
                                                    ignore_eos=True))[0].outputs[0]
    text = base.text
    assert len(text) > 6
    stop = text[3:6]
    out = engine.generate([prompt], SamplingParams(max_new_tokens=20, temperature=0,
                                                   ignore_eos=True, stop=[stop]))[0].outputs[0]
    assert out.text == text[: text.index(stop)]
    assert out.finish_reason == "stop" and out.stop_reason == stop


def test_repetition_penalties_change_output(engine):
    prompt = random_prompts((6,), seed=8)[0]
    plain = engine.generate([prompt], SamplingParams(max_new_tokens=30, temperature=0,
                                                     ignore_eos=True))[0].outputs[0].token_ids
    pen = engine.generate([prompt], SamplingParams(max_new_tokens=30, temperature=0,
                                                   ignore_eos=True, presence_penalty=2.0,
                                                   frequency_penalty=2.0))[0].outputs[0].token_ids
    assert len(set(pen)) >= len(set(plain))
    assert pen != plain or len(set(plain)) == len(plain)


def test_text_prompt_and_stream_concatenate_to_generate(engine):
    p = SamplingParams(max_new_tokens=15, temperature=0, ignore_eos=True)
    full = engine.generate("def f(x):", p)[0].outputs[0]
    deltas = list(engine.stream("def f(x):", p))
    assert deltas[-1].finished and not any(d.finished for d in deltas[:-1])
    assert "".join(d.outputs[0].text for d in deltas) == full.text
    assert [t for d in deltas for t in d.outputs[0].token_ids] == full.token_ids


def test_generate_async(engine):
    p = SamplingParams(max_new_tokens=8, temperature=0, ignore_eos=True)

    async def run():
        async def one(prompt):
            ids = []
            async for d in engine.generate_async(prompt, p):
                ids += d.outputs[0].token_ids
            return ids

        return await asyncio.gather(*(one(pr) for pr in random_prompts((5, 9, 13), seed=2)))

    got = asyncio.run(run())
    want = [o.outputs[0].token_ids for o in engine.generate(random_prompts((5, 9, 13), seed=2), p)]
    assert got == want


def test_abort_frees_every_page(engine):
    prompt = random_prompts((40,), seed=11)[0]
    stream = engine.stream(prompt, SamplingParams(max_new_tokens=200, temperature=0,
                                                  ignore_eos=True), request_id="to-abort")
    next(stream)
    next(stream)
    stream.close()  # the consumer walks away: the engine aborts the request
    for _ in range(100):
        s = engine.stats()
        if s.running == 0 and s.waiting == 0:
            break
    assert s.running == 0 and s.waiting == 0 and s.kv_pages_used == 0
    engine.check_invariants()


@pytest.mark.parametrize(("kwargs", "param"), [
    (dict(max_new_tokens=-1), "max_new_tokens"),  # 0 is valid: the prompt only
    (dict(prompt_logprobs=21), "prompt_logprobs"),
    (dict(temperature=-1), "temperature"),
    (dict(top_p=0), "top_p"),
    (dict(top_k=0), "top_k"),
    (dict(n=0), "n"),
    (dict(logprobs=99), "logprobs"),
    (dict(stop=[""]), "stop"),
])
def test_invalid_sampling_params(kwargs, param):
    with pytest.raises(InvalidRequestError) as err:
        SamplingParams(**kwargs)
    assert err.value.param == param


def test_invalid_prompts(engine):
    with pytest.raises(InvalidRequestError, match="outside the vocabulary"):
        engine.generate([[1, 2, 99999]])
    with pytest.raises(InvalidRequestError, match="empty"):
        engine.generate([[]])
    with pytest.raises(InvalidRequestError, match="context length"):
        engine.generate([[5] * 600])
    with pytest.raises(InvalidRequestError, match="unknown engine option"):
        Engine("x", not_an_option=1)


def test_script_without_shutdown_exits_cleanly(tmp_path):
    """A script that forgets ``with Engine(...)`` / ``shutdown()`` and exits while a request
    is still generating must exit 0 without the C++ runtime aborting."""
    import subprocess
    import sys
    import textwrap

    script = tmp_path / "forgets_shutdown.py"
    script.write_text(textwrap.dedent("""
        from pathlib import Path
        import anyware
        from anyware import Engine, SamplingParams
        demo = Path(anyware.__file__).parent / "assets" / "demo-llama"
        engine = Engine(str(demo), platform="cpu", show_progress=False)
        stream = engine.stream([1, 2, 3] * 40, SamplingParams(max_new_tokens=400, ignore_eos=True))
        for _, _ in zip(range(3), stream):
            pass
        print("bye")
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "bye" in proc.stdout
    assert "terminate called" not in proc.stderr, proc.stderr
