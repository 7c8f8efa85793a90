"""Every endpoint and option against a model without a tokenizer (a shape preset's situation):
what needs a tokenizer is a 400 ``tokenizer_required`` that names the parameter and says what to
do; everything else works with token ids."""

from __future__ import annotations

import json

import httpx
import pytest

from .test_bad_input import check_error

IDS = [5, 6, 7, 8]


@pytest.fixture(scope="module")
def bare(bare_server):
    with httpx.Client(base_url=bare_server.base_url, timeout=60) as c:
        yield c


def needs_tokenizer(r: httpx.Response, param: str | None, hint: str) -> None:
    err = check_error(r, 400, param)
    assert err["code"] == "tokenizer_required", err
    assert "no tokenizer" in err["message"] and hint in err["message"], err["message"]


def completion(bare_server, **extra) -> dict:
    return {"model": bare_server.model, "prompt": IDS, "max_tokens": 3, **extra}


@pytest.mark.parametrize("prompt", ["hello", ["a", "b"]])
def test_text_prompts(bare, bare_server, prompt):
    needs_tokenizer(bare.post("/v1/completions", json=completion(bare_server, prompt=prompt)),
                    "prompt", "token ids")
    needs_tokenizer(bare.post("/generate", json={"text": prompt}), "text", "token ids")


@pytest.mark.parametrize("extra,param,hint", [
    ({"logprobs": 1}, "logprobs", "/generate"),
    ({"logprobs": 0, "stream": True}, "logprobs", "/generate"),
    ({"echo": True}, "echo", "Leave out 'echo'"),
    ({"stop": "x"}, "stop", "stop_token_ids"),
    ({"stop": ["x"], "stream": True}, "stop", "stop_token_ids"),
])
def test_completion_options(bare, bare_server, extra, param, hint):
    needs_tokenizer(bare.post("/v1/completions", json=completion(bare_server, **extra)), param,
                    hint)


@pytest.mark.parametrize("extra", [{}, {"stream": True}, {"logprobs": True, "top_logprobs": 2}])
def test_chat(bare, bare_server, extra):
    body = {"model": bare_server.model, "messages": [{"role": "user", "content": "hi"}], **extra}
    needs_tokenizer(bare.post("/v1/chat/completions", json=body), "messages", "/v1/completions")


def test_token_id_completions_work(bare, bare_server, bare_engine):
    body = completion(bare_server, n=2, seed=1, temperature=0.5, ignore_eos=True,
                      stop_token_ids=[9], echo=False, logprobs=None)
    r = bare.post("/v1/completions", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["usage"]["prompt_tokens"] == len(IDS) and len(out["choices"]) == 2
    assert all(c["text"] == "" for c in out["choices"])  # no tokenizer, no text
    with bare.stream("POST", "/v1/completions",
                     json=completion(bare_server, stream=True, ignore_eos=True)) as s:
        assert s.status_code == 200
        events = [line for line in s.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[-2][6:])["choices"][0]["finish_reason"] == "length"


def test_generate_with_ids_and_logprobs(bare, bare_engine):
    body = {"input_ids": IDS, "sampling_params": {"max_new_tokens": 3, "temperature": 0,
                                                   "logprobs": 2, "ignore_eos": True}}
    r = bare.post("/generate", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert len(out["output_ids"]) == 3 and out["text"] == ""
    assert [e["token_id"] for e in out["logprobs"]] == out["output_ids"]
    assert all(len(e["top"]) == 2 for e in out["logprobs"])
    # the same request through the engine directly gives the same tokens
    from anyware import SamplingParams

    ref = bare_engine.generate([IDS], SamplingParams(max_new_tokens=3, temperature=0,
                                                      ignore_eos=True))
    assert out["output_ids"] == list(ref[0].outputs[0].token_ids)
    needs_tokenizer(bare.post("/generate", json={"input_ids": IDS,
                                                 "sampling_params": {"stop": ["x"]}}),
                    "sampling_params.stop", "stop_token_ids")
    with bare.stream("POST", "/generate", json={**body, "stream": True}) as s:
        assert s.status_code == 200
        events = [line[6:] for line in s.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    streamed = [t for e in events[:-1] for t in json.loads(e)["output_ids"]]
    assert streamed == out["output_ids"] and json.loads(events[-2])["finished"]


@pytest.mark.parametrize("path,body,param", [
    ("/tokenize", {"prompt": "hi"}, "prompt"),
    ("/v1/tokenize", {"prompt": "hi"}, "prompt"),
    ("/tokenize", {"messages": [{"role": "user", "content": "hi"}]}, "messages"),
    ("/detokenize", {"tokens": [1, 2]}, "tokens"),
    ("/v1/detokenize", {"tokens": [1, 2]}, "tokens"),
])
def test_tokenizer_endpoints(bare, path, body, param):
    needs_tokenizer(bare.post(path, json=body), param, "token ids")


def test_info_endpoints(bare, bare_server):
    needs_tokenizer(bare.get("/tokenizer_info"), None, "token ids")
    info = bare.get("/get_model_info").json()
    assert info["tokenizer_path"] is None and info["is_generation"] is True
    assert bare.get("/get_server_info").json()["served_model_name"] == bare_server.model
    for path in ("/health", "/health_generate", "/ping", "/version", "/v1/models", "/metrics"):
        assert bare.get(path).status_code == 200, path
