"""What clients and routers ask a server about itself: GET /version (vLLM), GET|POST /ping
(vLLM, SageMaker), GET /get_model_info and GET /get_server_info (SGLang's names and fields, which
sglang-router reads), answered from the engine and the server's launch settings."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from anyware.server.state import ServerState
from anyware.version import __version__


def version() -> dict[str, Any]:
    return {"version": __version__}


def model_info(state: ServerState) -> dict[str, Any]:
    engine = state.engine
    cfg = engine.config
    hf = getattr(engine.model_config, "extra", None) or {}
    return {
        "model_path": cfg.model,
        "tokenizer_path": _tokenizer_path(state),
        "is_generation": True,
        "preferred_sampling_params": None,
        "weight_version": "default",
        "has_image_understanding": False,
        "has_audio_understanding": False,
        "model_type": hf.get("model_type"),
        "architectures": [engine.model_config.architecture],
        # extensions
        "served_model_name": state.served_model_name,
        "context_length": state.context_len,
        "vocab_size": state.vocab_size,
    }


def _tokenizer_path(state: ServerState) -> str | None:
    if state.tokenizer is None:
        return None
    cfg = state.engine.config
    return cfg.tokenizer or cfg.model


async def server_info(state: ServerState) -> dict[str, Any]:
    """SGLang's flat layout: the launch settings under SGLang's argument names, scheduler
    limits, the engine's live counters in ``internal_states``, and ``version``; Anyware's own
    engine settings under ``anyware_engine_config``."""
    engine = state.engine
    cfg = engine.config
    stats = await asyncio.to_thread(engine.stats)
    info = engine.info
    return {
        "model_path": cfg.model,
        "tokenizer_path": _tokenizer_path(state),
        "served_model_name": state.served_model_name,
        "host": state.launch.get("host"),
        "port": state.launch.get("port"),
        "dtype": str(cfg.dtype) if cfg.dtype is not None else "auto",
        "kv_cache_dtype": str(cfg.kv_cache_dtype) if cfg.kv_cache_dtype is not None else "auto",
        "quantization": cfg.quantization,
        "load_format": cfg.load_format,
        "context_length": state.context_len,
        "page_size": info.page_size,
        "max_running_requests": info.max_running_requests,
        "chunked_prefill_size": cfg.chunked_prefill_size,
        "mem_fraction_static": cfg.mem_fraction,
        "disable_radix_cache": cfg.disable_radix_cache,
        "schedule_policy": cfg.schedule_policy,
        "schedule_conservativeness": cfg.schedule_conservativeness,
        "attention_backend": cfg.attention_backend,
        "random_seed": cfg.seed,
        "tp_size": cfg.tensor_parallel_size,
        "ep_size": cfg.tensor_parallel_size if cfg.enable_expert_parallel else 1,
        "dp_size": 1,  # replicas are separate servers behind a router (docs/scale-out.md)
        "api_key_set": state.api_key is not None,
        "platform": info.platform,
        "device": info.device_name,
        # the process that runs the scheduler and the model (this process with
        # --engine-in-process)
        "engine_pid": info.pid,
        "engine_in_process": engine.core is not None,
        "max_total_num_tokens": info.kv_capacity_tokens,
        "max_req_input_len": state.context_len - 1,
        "internal_states": [dataclasses.asdict(stats)],
        "version": __version__,
        "anyware_engine_config": _jsonable(dataclasses.asdict(cfg)),
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
