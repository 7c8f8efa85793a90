"""The endpoints clients and routers call besides generation (vLLM's /tokenize, /detokenize,
/tokenizer_info, /version, /ping; SGLang's /get_model_info, /get_server_info), the API-key rule
for them and for unknown paths, and explicit nulls meaning "default"."""

from __future__ import annotations

import httpx
import pytest

from .conftest import API_KEY
from .test_bad_input import check_error


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        yield c


@pytest.mark.parametrize("prefix", ["", "/v1"])
def test_tokenize_detokenize(http, server, engine, prefix):
    tok = engine.tokenizer
    text = "def read(path):\n    return open(path).read()"
    r = http.post(f"{prefix}/tokenize", json={"model": server.model, "prompt": text})
    assert r.status_code == 200, r.text
    body = r.json()
    want = tok(text, add_special_tokens=True)["input_ids"]
    assert body == {"count": len(want), "max_model_len": 1024, "tokens": want,
                    "token_strs": None}
    r = http.post(f"{prefix}/tokenize", json={"prompt": text, "add_special_tokens": False,
                                               "return_token_strs": True})
    body = r.json()
    assert body["tokens"] == tok(text, add_special_tokens=False)["input_ids"]
    assert body["token_strs"] == tok.convert_ids_to_tokens(body["tokens"])
    r = http.post(f"{prefix}/detokenize", json={"tokens": body["tokens"]})
    assert r.status_code == 200 and r.json() == {"prompt": text}


def test_tokenize_messages_matches_chat_prompt(http, server):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    ids = http.post("/tokenize", json={"messages": messages}).json()["tokens"]
    chat = http.post("/v1/chat/completions", json={"model": server.model, "messages": messages,
                                                   "max_tokens": 1}).json()
    assert len(ids) == chat["usage"]["prompt_tokens"]
    without = http.post("/tokenize", json={"messages": messages,
                                           "add_generation_prompt": False}).json()["tokens"]
    assert len(without) < len(ids) and ids[:len(without)] == without


@pytest.mark.parametrize("path,body,status,param", [
    ("/tokenize", {}, 400, "prompt"),
    ("/tokenize", {"prompt": "a", "messages": [{"role": "user", "content": "b"}]}, 400, "prompt"),
    ("/tokenize", {"prompt": 5}, 400, "prompt"),
    ("/tokenize", {"prompt": "a", "model": "other"}, 404, "model"),
    ("/tokenize", {"prompt": "a", "frobnicate": 1}, 400, "frobnicate"),
    ("/detokenize", {"tokens": [1, 10**6]}, 400, "tokens"),
    ("/detokenize", {"tokens": "1 2"}, 400, "tokens"),
    ("/detokenize", {}, 400, "tokens"),
])
def test_tokenize_bad_input(http, path, body, status, param):
    check_error(http.post(path, json=body), status, param)


def test_lm_eval_remote_tokenizer_check(http, engine):
    """What lm-eval's check_remote_tokenizer_support (lm_eval/models/utils.py) and its
    RemoteTokenizer call, stripped of the /v1/completions suffix of base_url."""
    info = http.get("/tokenizer_info").json()
    assert info["eos_token"] == engine.tokenizer.eos_token and "chat_template" in info
    r = http.post("/tokenize", json={"prompt": "test", "add_special_tokens": False})
    assert isinstance(r.json()["tokens"], list) and r.json()["tokens"]
    assert http.post("/detokenize", json={"tokens": r.json()["tokens"]}).json()["prompt"] == "test"


def test_version_and_ping(http):
    from anyware.version import __version__

    assert http.get("/version").json() == {"version": __version__}
    assert http.get("/ping").status_code == 200
    assert http.post("/ping").status_code == 200


def test_model_and_server_info(http, server, engine):
    info = http.get("/get_model_info").json()
    assert info["model_path"] == engine.config.model and info["is_generation"] is True
    assert info["tokenizer_path"] == engine.config.model
    assert info["architectures"] == ["LlamaForCausalLM"] and info["model_type"] == "llama"
    assert info["served_model_name"] == server.model
    s = http.get("/get_server_info").json()
    assert s["model_path"] == engine.config.model and s["served_model_name"] == server.model
    assert s["context_length"] == 1024 and s["max_req_input_len"] == 1023
    assert s["max_total_num_tokens"] == engine.core.kv_capacity_tokens
    assert s["max_running_requests"] == engine.core.max_running_requests == engine.info.max_running_requests
    assert set(s["internal_states"][0]) >= {"running", "waiting", "kv_pages_used"}
    assert s["version"] and s["api_key_set"] is False
    assert s["kv_cache_dtype"] == "auto" and s["quantization"] is None


def test_api_key_rule(auth_server):
    key = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=auth_server.base_url, timeout=60) as c:
        for path in ("/health", "/ping", "/version", "/metrics"):  # probes: no key
            assert c.get(path).status_code == 200, path
        for method, path in (("POST", "/tokenize"), ("POST", "/v1/detokenize"),
                             ("GET", "/get_server_info"), ("GET", "/get_model_info"),
                             ("GET", "/tokenizer_info"), ("GET", "/no/such/path"),
                             ("POST", "/v1/nothing")):
            err = check_error(c.request(method, path, json={}), 401)
            assert err["code"] == "missing_api_key"
        check_error(c.get("/no/such/path", headers=key), 404)
        r = c.post("/tokenize", json={"prompt": "a"}, headers=key)
        assert r.status_code == 200, r.text


def test_nulls_mean_default(http, server):
    nulls = dict(max_tokens=None, temperature=None, top_p=None, n=None, stream=None,
                 stream_options=None, stop=None, presence_penalty=None, frequency_penalty=None,
                 seed=None, user=None, logit_bias=None, top_k=None, min_p=None,
                 repetition_penalty=None, ignore_eos=None, stop_token_ids=None,
                 skip_special_tokens=None)
    r = http.post("/v1/completions", json={"model": server.model, "prompt": "x", **nulls,
                                            "logprobs": None, "echo": None, "best_of": None,
                                            "suffix": None})
    assert r.status_code == 200, r.text
    out = r.json()
    assert len(out["choices"]) == 1 and out["choices"][0]["logprobs"] is None
    assert out["usage"]["completion_tokens"] <= 16  # the default max_tokens
    r = http.post("/v1/chat/completions", json={
        "model": server.model, "messages": [{"role": "user", "content": "x"}], **nulls,
        "max_completion_tokens": None, "logprobs": None, "top_logprobs": None,
        "metadata": None, "store": None, "service_tier": None, "tools": None,
        "tool_choice": None, "parallel_tool_calls": None, "functions": None,
        "function_call": None, "response_format": None, "modalities": None, "audio": None,
        "prediction": None, "reasoning_effort": None, "web_search_options": None})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["logprobs"] is None
    r = http.post("/v1/completions", json={"model": server.model, "prompt": "x",
                                            "stream": True, "stream_options": {
                                                "include_usage": None}})
    assert r.status_code == 200 and r.text.rstrip().endswith("data: [DONE]")
    r = http.post("/generate", json={"text": "x", "input_ids": None, "stream": None,
                                     "sampling_params": {"max_new_tokens": None, "n": None,
                                                         "stop": None, "logprobs": None,
                                                         "temperature": None}})
    assert r.status_code == 200, r.text
    assert http.post("/generate", json={"text": "x", "sampling_params": None}).status_code == 200


@pytest.mark.parametrize("path,body,param", [
    ("/v1/completions", {"model": None, "prompt": "x"}, "model"),
    ("/v1/completions", {"model": "tiny-llama", "prompt": None}, "prompt"),
    ("/v1/chat/completions", {"model": "tiny-llama", "messages": None}, "messages"),
    ("/v1/completions", {"model": "tiny-llama", "prompt": "x", "unknown": None}, "unknown"),
])
def test_null_for_required_or_unknown_fields(http, path, body, param):
    check_error(http.post(path, json=body), 400, param)
