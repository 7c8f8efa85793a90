"""`EngineConfig`: every knob of the engine, with its default."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from anyware.plugin import QUANTIZATIONS
from anyware.request.errors import InvalidRequestError
from anyware.spec import SpecConfig

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


def parse_dtype(value: str | torch.dtype | None) -> torch.dtype | None:
    if value is None or isinstance(value, torch.dtype):
        return value
    if value == "auto":
        return None
    try:
        return _DTYPES[value]
    except KeyError:
        raise InvalidRequestError(f"dtype {value!r}; choose from {sorted(_DTYPES)}", "dtype") from None


# FP8 e4m3 (``--kv-cache-dtype fp8``): KV only, stored saturated to +-448 with scale 1.0.
_KV_DTYPES = {**_DTYPES, "fp8": torch.float8_e4m3fn, "fp8_e4m3": torch.float8_e4m3fn,
              "float8_e4m3fn": torch.float8_e4m3fn}


def parse_kv_dtype(value: str | torch.dtype | None) -> torch.dtype | None:
    """The KV-cache dtype named ``value``: the model dtypes plus ``fp8`` (also ``fp8_e4m3``,
    ``float8_e4m3fn``); ``None`` or ``"auto"``: the model dtype."""
    if value is None or isinstance(value, torch.dtype):
        return value
    if value == "auto":
        return None
    try:
        return _KV_DTYPES[value]
    except KeyError:
        raise InvalidRequestError(f"kv_cache_dtype {value!r}; choose from {sorted(_KV_DTYPES)}",
                                  "kv_cache_dtype") from None


DEMO_MODEL = "anyware-demo"


def demo_model_path() -> Path:
    """The demo model shipped in the package (``anyware/assets/demo-llama``)."""
    return Path(__file__).resolve().parent.parent / "assets" / "demo-llama"


def resolve_model(model: str | None) -> str:
    """``model`` as the engine loads it: ``None`` and ``"anyware-demo"`` name the built-in demo
    model; anything else (a model directory or a shape preset) is kept."""
    return str(demo_model_path()) if model is None or model == DEMO_MODEL else str(model)


@dataclass(frozen=True)
class EngineConfig:
    model: str
    platform: str | None = None
    dtype: str | torch.dtype | None = None
    kv_cache_dtype: str | torch.dtype | None = None
    load_format: str = "auto"
    # linear-layer quantization at load (docs/quantization.md): None, or "fp8" (W8A8 e4m3:
    # weights per output channel, activations per token; Capabilities.quantization)
    quantization: str | None = None
    page_size: int | None = None
    # None: sized from the KV pool once it exists (anyware.memory.running_cap: 256 to 1024;
    # EngineCore.max_running_requests is the value in force)
    max_running_requests: int | None = None
    chunked_prefill_size: int = 2048
    mixed_batches: bool = True
    kv_cache_bytes: int | None = None
    mem_fraction: float = 0.85
    context_len: int | None = None
    disable_radix_cache: bool = False
    schedule_policy: str = "lpm"
    # admission keeps 0.7 -> 0.1 (decaying; back up at a retraction) of the running requests'
    # remaining output free, times this (SGLang's --schedule-conservativeness); 0: off
    schedule_conservativeness: float = 1.0
    attention_backend: str | None = None
    execution: str = "auto"
    # overlap the scheduling of step N+1 with step N on the device; None: when the platform
    # executes asynchronously (Capabilities.async_execution)
    overlap_schedule: bool | None = None
    seed: int = 0
    tokenizer: str | None = None
    debug_invariants: bool = False
    show_progress: bool = True
    # platform-specific settings, handed to the plugin unchanged as PlatformConfig.extra (each
    # platform's doc lists the keys it reads; unknown keys are ignored by the platform)
    platform_options: dict = field(default_factory=dict)
    # speculative decoding (docs/speculative.md): None (off), "ngram" (prompt lookup),
    # "draft" (the model at speculative_draft_model, same tokenizer) or "eagle3" (the EAGLE-3
    # head at speculative_draft_model); k drafts per verify
    speculative_algorithm: str | None = None
    speculative_num_draft_tokens: int = 4
    speculative_draft_model: str | None = None
    speculative_ngram_min: int = 1
    speculative_ngram_max: int = 4
    # ngram: draft token trees (several matches merged into a trie, at most k nodes) that
    # greedy requests verify in one step (needs the attention feature tree_mask)
    speculative_ngram_tree: bool = False
    # eagle3: children per tree node (SGLang's --speculative-eagle-topk); 1 drafts chains,
    # more draft token trees of at most k nodes (needs the attention feature tree_mask)
    speculative_eagle_topk: int = 1
    # temperature > 0: "exact" keeps a draft only when it equals the target's own seeded
    # sample (output identical to no speculation, seed for seed); "rejection" accepts draft d
    # with probability min(1, p(d) / q(d)) and resamples a rejection from the residual. Both
    # keep the target's distribution; for the deterministic drafts of "ngram" and "draft"
    # (q a point mass) both keep a draft with probability p(d), so "exact" is the default.
    # Greedy requests always take the argmax.
    speculative_acceptance: str = "exact"
    # pause speculation for a batch size at which it measurably does not pay (tokens per
    # second with drafts vs without, measured online per batch-size bucket, with hysteresis
    # and probes; anyware.spec.switch); False: always speculate
    speculative_auto_off: bool = True
    # parallelism (docs/parallelism.md): tensor_parallel_size ranks, one process each (spawned
    # here, or started by torchrun); enable_expert_parallel shards MoE experts over them;
    # nnodes / node_rank / dist_init_addr place the ranks on several hosts (without torchrun);
    # dist_timeout: seconds a collective may wait for a rank before the group is declared down
    tensor_parallel_size: int = 1
    enable_expert_parallel: bool = False
    nnodes: int = 1
    node_rank: int = 0
    dist_init_addr: str | None = None
    dist_timeout: float = 300.0

    def spec_config(self) -> SpecConfig | None:
        """The speculative-decoding settings, or ``None`` when speculation is off."""
        if self.speculative_algorithm is None:
            return None
        return SpecConfig(self.speculative_algorithm, self.speculative_num_draft_tokens,
                          self.speculative_draft_model, self.speculative_ngram_min,
                          self.speculative_ngram_max, self.speculative_ngram_tree,
                          self.speculative_eagle_topk)

    @classmethod
    def from_kwargs(cls, model: str | None, **kwargs) -> EngineConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise InvalidRequestError(f"unknown engine option(s) {unknown}; known: {sorted(known)}")
        cfg = cls(model=resolve_model(model), **kwargs)
        if not 0 < cfg.mem_fraction <= 1:
            raise InvalidRequestError("mem_fraction must be in (0, 1]", "mem_fraction")
        if cfg.speculative_ngram_tree and cfg.speculative_algorithm is None:
            raise InvalidRequestError("speculative_ngram_tree needs speculative_algorithm "
                                      "'ngram'", "speculative_ngram_tree")
        if cfg.speculative_eagle_topk != 1 and cfg.speculative_algorithm is None:
            raise InvalidRequestError("speculative_eagle_topk needs speculative_algorithm "
                                      "'eagle3'", "speculative_eagle_topk")
        if cfg.speculative_algorithm is not None:
            try:
                cfg.spec_config().check()
            except ValueError as e:
                raise InvalidRequestError(str(e), "speculative_algorithm") from None
        if cfg.speculative_acceptance not in ("rejection", "exact"):
            raise InvalidRequestError("speculative_acceptance must be 'rejection' or 'exact'",
                                      "speculative_acceptance")
        if cfg.tensor_parallel_size < 1:
            raise InvalidRequestError("tensor_parallel_size must be >= 1", "tensor_parallel_size")
        if cfg.dist_timeout <= 0:
            raise InvalidRequestError("dist_timeout must be > 0 seconds", "dist_timeout")
        if cfg.quantization is not None and cfg.quantization not in QUANTIZATIONS:
            raise InvalidRequestError(f"quantization {cfg.quantization!r}; choose from "
                                      f"{list(QUANTIZATIONS)} or leave it unset",
                                      "quantization")
        if cfg.max_running_requests is not None and cfg.max_running_requests < 1:
            raise InvalidRequestError("max_running_requests must be >= 1 (or unset: sized from "
                                      "the KV cache)", "max_running_requests")
        if not cfg.schedule_conservativeness >= 0:
            raise InvalidRequestError("schedule_conservativeness must be >= 0 (0 turns the "
                                      "output reserve off)", "schedule_conservativeness")
        return cfg
