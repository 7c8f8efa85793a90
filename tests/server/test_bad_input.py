"""Bad requests get a 4xx with an OpenAI-style error body, and the server keeps serving: against
the tiny model with its tokenizer and against the same shapes without one (a preset's case,
where text and chat need a tokenizer: those answers are 400 ``tokenizer_required``)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import openai
import pytest

from .conftest import API_KEY
from .tiny_model import CONTEXT_LEN

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"


@dataclass
class Target:
    base_url: str
    model: str
    prompt: str | list[int]  # a prompt the model accepts
    has_tokenizer: bool


def ok_chat(target: Target, **extra) -> dict:
    return {"model": target.model, "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 2, **extra}


def ok_completion(target: Target, **extra) -> dict:
    return {"model": target.model, "prompt": target.prompt, "max_tokens": 2, **extra}


def check_error(r: httpx.Response, status: int, param: str | None = None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["type"], str)
    if param is not None:
        assert err["param"] == param, err
    return err


@pytest.fixture(scope="module", params=["tokenizer", "no-tokenizer"])
def srv(request) -> Target:
    if request.param == "tokenizer":
        s = request.getfixturevalue("server")
        return Target(s.base_url, s.model, "hi", True)
    s = request.getfixturevalue("bare_server")
    return Target(s.base_url, s.model, [1, 2, 3], False)


@pytest.fixture(scope="module")
def http(srv):
    with httpx.Client(base_url=srv.base_url, timeout=60) as c:
        yield c


def still_serving(http, target):
    r = http.post(COMPLETIONS, json=ok_completion(target))
    assert r.status_code == 200, r.text


def check_chat_error(r: httpx.Response, target: Target, param: str | None, code: str | None):
    """A chat request valid but for ``param``: the model without a tokenizer refuses every chat
    request first (400 on 'messages', code tokenizer_required)."""
    if target.has_tokenizer:
        err = check_error(r, 400, param)
        if code is not None:
            assert err["code"] == code, err
    else:
        err = check_error(r, 400, "messages")
        assert err["code"] == "tokenizer_required", err


def test_malformed_json(http, srv):
    for raw in (b"{not json", b"", b"[1, 2]", b'"text"', b"\xff\xfe"):
        r = http.post(CHAT, content=raw, headers={"content-type": "application/json"})
        check_error(r, 400)
    still_serving(http, srv)


@pytest.mark.parametrize("path,body,param", [
    (CHAT, {"messages": [{"role": "user", "content": "x"}]}, "model"),
    (CHAT, {"model": "tiny-llama"}, "messages"),
    (COMPLETIONS, {"model": "tiny-llama"}, "prompt"),
])
def test_missing_fields(http, path, body, param):
    check_error(http.post(path, json=body), 400, param)


@pytest.mark.parametrize("field,value", [
    ("max_tokens", "5"), ("temperature", "hot"), ("n", 1.5), ("stream", "yes"),
    ("top_p", [1]), ("stop", 5), ("seed", 1.5), ("messages", "hello"), ("model", 7),
    ("logprobs", 1), ("top_logprobs", "3"),
])
def test_wrong_types_chat(http, srv, field, value):
    body = ok_chat(srv)
    body[field] = value
    if field == "top_logprobs":
        body["logprobs"] = True
    err = check_error(http.post(CHAT, json=body), 400)
    assert err["param"].split(".")[0].split("[")[0] == field, err


@pytest.mark.parametrize("messages,param", [
    ([], "messages"),
    ([{"role": "wizard", "content": "x"}], "messages[0].role"),
    ([{"content": "x"}], "messages[0].role"),
    ([{"role": "user", "content": 5}], "messages[0].content"),
])
def test_bad_messages(http, srv, messages, param):
    check_error(http.post(CHAT, json={"model": srv.model, "messages": messages}), 400, param)


def test_unknown_model(http, srv):
    err = check_error(http.post(CHAT, json={**ok_chat(srv), "model": "gpt-5"}), 404,
                      "model")
    assert err["code"] == "model_not_found"
    check_error(http.post(COMPLETIONS, json={**ok_completion(srv), "model": "x"}), 404)
    check_error(http.get("/v1/models/nope"), 404)


@pytest.mark.parametrize("field,value", [
    ("max_tokens", -1), ("max_tokens", 0), ("max_tokens", 10**9), ("max_tokens", CONTEXT_LEN),
    ("n", 0), ("n", 1000), ("top_p", 0.0), ("top_p", 1.5), ("temperature", -0.1),
    ("temperature", 2.5), ("presence_penalty", 3.0), ("frequency_penalty", -2.5),
])
def test_out_of_range(http, srv, field, value):
    r = http.post(CHAT, json=ok_chat(srv, **{field: value}))
    if field == "max_tokens" and value >= 1:  # too big: checked after the chat template
        check_chat_error(r, srv, field, "context_length_exceeded")
    else:
        check_error(r, 400, field)
    check_error(http.post(COMPLETIONS, json=ok_completion(srv, **{field: value})), 400,
                field)


def test_max_completion_tokens_too_big(http, srv):
    body = ok_chat(srv, max_completion_tokens=10**6)
    body.pop("max_tokens")
    check_error(http.post(CHAT, json=body), 400)


@pytest.mark.parametrize("extra,param", [
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ({"logprobs": True, "top_logprobs": -1}, "top_logprobs"),
    ({"top_logprobs": 2}, "top_logprobs"),
])
def test_bad_chat_logprobs(http, srv, extra, param):
    check_error(http.post(CHAT, json=ok_chat(srv, **extra)), 400, param)


@pytest.mark.parametrize("value", [-1, 6, True])
def test_bad_completion_logprobs(http, srv, value):
    check_error(http.post(COMPLETIONS, json=ok_completion(srv, logprobs=value)), 400,
                "logprobs")


def test_prompt_longer_than_context(http, srv):
    long_ids = [5] * (CONTEXT_LEN + 10)
    err = check_error(http.post(COMPLETIONS, json=ok_completion(srv, prompt=long_ids)),
                      400)
    assert err["code"] == "context_length_exceeded"
    words = "x = 1\n" * CONTEXT_LEN
    check_chat_error(http.post(CHAT, json={"model": srv.model, "messages": [
        {"role": "user", "content": words}]}), srv, None, "context_length_exceeded")
    r = http.post("/generate", json={"input_ids": long_ids})
    check_error(r, 400, "input_ids")
    still_serving(http, srv)


@pytest.mark.parametrize("ids", [[1, 2, -1], [1, 10**9], [[3, 4], [512]]])
def test_out_of_vocabulary(http, srv, ids):
    err = check_error(http.post(COMPLETIONS, json=ok_completion(srv, prompt=ids)), 400,
                      "prompt")
    assert err["code"] == "invalid_token_id"
    flat = ids if isinstance(ids[0], int) else ids[1]
    check_error(http.post("/generate", json={"input_ids": flat}), 400, "input_ids")


def test_empty_prompts(http, srv):
    for prompt in ([], [[]], [[1], []]):
        check_error(http.post(COMPLETIONS, json=ok_completion(srv, prompt=prompt)), 400,
                    "prompt")
    check_error(http.post("/generate", json={"input_ids": []}), 400)
    check_error(http.post("/generate", json={}), 400)
    check_error(http.post("/generate", json={"text": "a", "input_ids": [1]}), 400)


@pytest.mark.parametrize("extra,param", [
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ({"tool_choice": "auto"}, "tool_choice"),
    ({"functions": [{"name": "f"}]}, "functions"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
     "response_format"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"logit_bias": {"5": 10}}, "logit_bias"),
    ({"audio": {"voice": "x"}}, "audio"),
    ({"modalities": ["text", "audio"]}, "modalities"),
])
def test_unsupported_chat_params(http, srv, extra, param):
    err = check_error(http.post(CHAT, json=ok_chat(srv, **extra)), 400, param)
    assert param in err["message"]


def test_unsupported_and_unknown_completion_params(http, srv):
    for extra, param in (({"suffix": "x"}, "suffix"), ({"best_of": 3}, "best_of"),
                         ({"logit_bias": {"1": 1}}, "logit_bias")):
        err = check_error(http.post(COMPLETIONS, json=ok_completion(srv, **extra)), 400,
                          param)
        assert param in err["message"]
    err = check_error(http.post(COMPLETIONS, json=ok_completion(srv, frobnicate=1)), 400,
                      "frobnicate")
    assert "frobnicate" in err["message"]


def test_image_parts_rejected(http, srv):
    msg = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
    check_error(http.post(CHAT, json={"model": srv.model, "messages": [msg]}), 400,
                "messages[0].content[0]")


def test_harmless_fields_accepted(http, srv):
    body = ok_chat(srv, user="u", metadata={"a": "b"}, store=False, tool_choice="none",
                   response_format={"type": "text"}, stream_options=None)
    r = http.post(CHAT, json=body)
    if srv.has_tokenizer:
        assert r.status_code == 200, r.text
    else:
        check_chat_error(r, srv, None, None)


def test_not_found_and_method(http):
    check_error(http.get("/v1/nothing"), 404)
    check_error(http.get(CHAT), 405)


def test_api_key(auth_server):
    url = auth_server.base_url
    with httpx.Client(base_url=url, timeout=60) as c:
        body = {"model": auth_server.model, "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 2}
        err = check_error(c.post(CHAT, json=body), 401)
        assert err["code"] == "missing_api_key"
        err = check_error(c.post(CHAT, json=body, headers={"Authorization": "Bearer wrong"}), 401)
        assert err["code"] == "invalid_api_key"
        check_error(c.post("/generate", json={"text": "a"}, headers={"Authorization": "x"}), 401)
        check_error(c.get("/v1/models"), 401)
        assert c.get("/health").status_code == 200  # probes need no key
        ok = c.post(CHAT, json=body, headers={"Authorization": f"Bearer {API_KEY}"})
        assert ok.status_code == 200, ok.text
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=auth_server.v1, api_key="bad", max_retries=0).models.list()
    good = openai.OpenAI(base_url=auth_server.v1, api_key=API_KEY, max_retries=0)
    assert good.models.list().data[0].id == auth_server.model


def test_openai_client_sees_bad_request(client, server):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=server.model, messages=[], max_tokens=2)
    assert info.value.body["param"] == "messages"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=server.model, stream=True, max_tokens=10**7,
                                       messages=[{"role": "user", "content": "x"}])
