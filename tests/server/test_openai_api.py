"""The OpenAI endpoints through the real ``openai`` client, checked against the engine's own
output for the same prompt and parameters."""

from __future__ import annotations

import json
import math

import httpx
import pytest
from anyware import SamplingParams

PROMPT = "def fibonacci(n):\n    "


def engine_greedy(engine, ids, max_new_tokens):
    out = engine.generate([ids], SamplingParams(max_new_tokens=max_new_tokens, temperature=0,
                                                ignore_eos=True))
    return out[0].outputs[0]


def test_models(client, server):
    models = client.models.list()
    assert [m.id for m in models.data] == [server.model]
    assert client.models.retrieve(server.model).id == server.model


def test_completion_matches_engine(client, server):
    tok = server.engine.tokenizer
    ids = tok(PROMPT)["input_ids"]
    ref = engine_greedy(server.engine, ids, 12)
    resp = client.completions.create(model=server.model, prompt=PROMPT, max_tokens=12,
                                     temperature=0, extra_body={"ignore_eos": True})
    assert resp.object == "text_completion"
    assert resp.id.startswith("cmpl-")
    (choice,) = resp.choices
    assert choice.text == ref.text
    assert choice.finish_reason == "length"
    assert resp.usage.prompt_tokens == len(ids)
    assert resp.usage.completion_tokens == 12
    assert resp.usage.total_tokens == len(ids) + 12
    assert resp.usage.prompt_tokens_details.cached_tokens >= 0


def test_completion_token_prompt_batch(client, server):
    """A list of token-id prompts: one choice per prompt, same text as the engine."""
    prompts = [[5, 6, 7, 8], [100, 101]]
    resp = client.completions.create(model=server.model, prompt=prompts, max_tokens=5,
                                     temperature=0, extra_body={"ignore_eos": True})
    assert [c.index for c in resp.choices] == [0, 1]
    for p, c in zip(prompts, resp.choices):
        assert c.text == engine_greedy(server.engine, p, 5).text
    assert resp.usage.prompt_tokens == 6
    assert resp.usage.completion_tokens == 10


def test_completion_echo(client, server):
    resp = client.completions.create(model=server.model, prompt=PROMPT, max_tokens=3,
                                     temperature=0, echo=True)
    assert resp.choices[0].text.startswith(PROMPT)


def test_chat_uses_template(client, server):
    tok = server.engine.tokenizer
    messages = [{"role": "system", "content": "You write Python."},
                {"role": "user", "content": "Sort a list."}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    ref = engine_greedy(server.engine, ids, 10)
    resp = client.chat.completions.create(model=server.model, messages=messages, max_tokens=10,
                                          temperature=0, extra_body={"ignore_eos": True})
    assert resp.object == "chat.completion"
    (choice,) = resp.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == ref.text
    assert choice.finish_reason == "length"
    assert resp.usage.prompt_tokens == len(ids)
    assert resp.usage.completion_tokens == 10


def test_chat_max_completion_tokens_and_content_parts(client, server):
    resp = client.chat.completions.create(
        model=server.model,
        messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        max_completion_tokens=4, extra_body={"ignore_eos": True},
    )
    assert resp.usage.completion_tokens == 4


def test_chat_stream_with_usage(client, server):
    kwargs = dict(model=server.model, messages=[{"role": "user", "content": "print"}],
                  max_tokens=9, temperature=0, extra_body={"ignore_eos": True})
    whole = client.chat.completions.create(**kwargs)
    chunks = list(client.chat.completions.create(
        **kwargs, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length" and all(f is None for f in finishes[:-1])
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 9
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens
    assert len({c.id for c in chunks}) == 1


def test_completion_stream(client, server):
    kwargs = dict(model=server.model, prompt=PROMPT, max_tokens=7, temperature=0,
                  extra_body={"ignore_eos": True})
    whole = client.completions.create(**kwargs)
    chunks = list(client.completions.create(**kwargs, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == whole.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(c.usage is None for c in chunks)


def test_n_choices(client, server):
    resp = client.chat.completions.create(
        model=server.model, messages=[{"role": "user", "content": "x"}], n=3, max_tokens=5,
        temperature=1.0, seed=1234, extra_body={"ignore_eos": True})
    assert sorted(c.index for c in resp.choices) == [0, 1, 2]
    assert resp.usage.completion_tokens == 15
    again = client.chat.completions.create(
        model=server.model, messages=[{"role": "user", "content": "x"}], n=3, max_tokens=5,
        temperature=1.0, seed=1234, extra_body={"ignore_eos": True})
    assert [c.message.content for c in again.choices] == [c.message.content for c in resp.choices]
    streamed = list(client.completions.create(
        model=server.model, prompt="x", n=2, max_tokens=4, stream=True,
        extra_body={"ignore_eos": True}))
    by_index = {}
    for c in streamed:
        for ch in c.choices:
            by_index.setdefault(ch.index, []).append(ch)
    assert sorted(by_index) == [0, 1]
    assert all(chs[-1].finish_reason == "length" for chs in by_index.values())


def test_chat_logprobs(client, server):
    resp = client.chat.completions.create(
        model=server.model, messages=[{"role": "user", "content": "a"}], max_tokens=6,
        temperature=0, logprobs=True, top_logprobs=3, extra_body={"ignore_eos": True})
    content = resp.choices[0].logprobs.content
    assert len(content) == 6
    assert "".join(e.token for e in content) == resp.choices[0].message.content
    for e in content:
        assert len(e.top_logprobs) == 3
        assert e.logprob <= 0
        # Greedy: the chosen token is the most likely one.
        assert math.isclose(e.logprob, max(t.logprob for t in e.top_logprobs), abs_tol=1e-4)
        assert bytes(e.bytes).decode("utf-8", "replace") == e.token


def test_completion_logprobs(client, server):
    resp = client.completions.create(model=server.model, prompt=PROMPT, max_tokens=5,
                                     temperature=0, logprobs=2, extra_body={"ignore_eos": True})
    lp = resp.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 5
    assert all(len(t) <= 2 for t in lp.top_logprobs)
    assert lp.text_offset[0] == 0
    assert all(x <= 0 for x in lp.token_logprobs)


def test_stop_sequence(client, server):
    base = client.completions.create(model=server.model, prompt=PROMPT, max_tokens=24,
                                     temperature=0, extra_body={"ignore_eos": True})
    text = base.choices[0].text
    stop = next((text[i:i + 2] for i in range(4, len(text) - 2) if text[i:i + 2].strip()), None)
    if stop is None:
        pytest.skip("the random model produced no usable stop sequence")
    cut = client.completions.create(model=server.model, prompt=PROMPT, max_tokens=24,
                                    temperature=0, stop=[stop], extra_body={"ignore_eos": True})
    assert cut.choices[0].text == text[: text.find(stop)]
    assert cut.choices[0].finish_reason == "stop"
    chat_base = client.chat.completions.create(
        model=server.model, messages=[{"role": "user", "content": "x"}], max_tokens=24,
        temperature=0, extra_body={"ignore_eos": True}).choices[0].message.content
    stop = next((chat_base[i:i + 2] for i in range(4, len(chat_base) - 2)
                 if chat_base[i:i + 2].strip()), None)
    if stop is not None:
        chunks = list(client.chat.completions.create(
            model=server.model, messages=[{"role": "user", "content": "x"}], max_tokens=24,
            temperature=0, stop=stop, stream=True, extra_body={"ignore_eos": True}))
        got = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert got == chat_base[: chat_base.find(stop)]
        assert chunks[-1].choices[0].finish_reason == "stop"


def test_native_generate(server):
    tok = server.engine.tokenizer
    ids = tok(PROMPT)["input_ids"]
    ref = engine_greedy(server.engine, ids, 6)
    r = httpx.post(f"{server.base_url}/generate", json={
        "text": PROMPT,
        "sampling_params": {"max_new_tokens": 6, "temperature": 0, "ignore_eos": True}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["text"] == ref.text
    assert body["output_ids"] == ref.token_ids
    assert body["meta_info"]["prompt_tokens"] == len(ids)
    assert body["meta_info"]["completion_tokens"] == 6
    assert body["meta_info"]["finish_reason"] == "length"
    r = httpx.post(f"{server.base_url}/generate", json={
        "input_ids": [ids, ids], "sampling_params": {"max_new_tokens": 6, "temperature": 0,
                                                      "ignore_eos": True}})
    assert [b["output_ids"] for b in r.json()] == [ref.token_ids, ref.token_ids]


def test_health_and_metrics(client, server):
    assert httpx.get(f"{server.base_url}/health").status_code == 200
    assert httpx.get(f"{server.base_url}/health_generate").status_code == 200
    client.completions.create(model=server.model, prompt="x", max_tokens=3)
    text = httpx.get(f"{server.base_url}/metrics").text
    for name in (
        'anyware_http_requests_total{endpoint="/v1/completions",status="200"}',
        "anyware_time_to_first_token_seconds_bucket",
        "anyware_inter_token_latency_seconds_bucket",
        "anyware_num_requests_running", "anyware_num_requests_waiting",
        "anyware_kv_cache_usage_ratio", "anyware_prefix_cache_hit_rate",
        "anyware_prompt_tokens_total", "anyware_generation_tokens_total",
        "anyware_request_prompt_tokens_total", "anyware_request_generation_tokens_total",
    ):
        assert name in text, name


def test_native_generate_stream_and_logprobs(server):
    ids = server.engine.tokenizer(PROMPT)["input_ids"]
    ref = engine_greedy(server.engine, ids, 6)
    params = {"max_new_tokens": 6, "temperature": 0, "ignore_eos": True, "logprobs": 2}
    whole = httpx.post(f"{server.base_url}/generate",
                       json={"input_ids": ids, "sampling_params": params}).json()
    assert [e["token_id"] for e in whole["logprobs"]] == ref.token_ids
    assert all(len(e["top"]) == 2 and e["logprob"] <= 0 for e in whole["logprobs"])
    with httpx.stream("POST", f"{server.base_url}/generate",
                      json={"input_ids": ids, "sampling_params": params, "stream": True}) as r:
        events = [line[len("data: "):] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"

    parts = [json.loads(e) for e in events[:-1]]
    assert [t for p in parts for t in p["output_ids"]] == ref.token_ids
    assert "".join(p["text"] for p in parts) == ref.text
    assert parts[-1]["finished"] and parts[-1]["meta_info"]["finish_reason"] == "length"


def test_stream_chunks_carry_content(server):
    """Every content chunk of a chat stream has text (no empty deltas from partial UTF-8)."""
    body = {"model": server.model, "messages": [{"role": "user", "content": "z"}],
            "max_tokens": 20, "stream": True, "ignore_eos": True, "temperature": 0}
    with httpx.stream("POST", f"{server.base_url}/v1/chat/completions", json=body) as r:


        chunks = [json.loads(line[6:]) for line in r.iter_lines()
                  if line.startswith("data: ") and line != "data: [DONE]"]
    for c in chunks[1:]:
        delta = c["choices"][0]["delta"]
        assert delta == {} or delta["content"], c
