"""Start-up checks of a requested configuration against what the platform and its attention
backends declare (rule 6: a missing feature is an error with the reason, never a silent
fallback)."""

from __future__ import annotations

from dataclasses import replace

import torch
from anyware.plugin import (
    EXECUTION_KINDS,
    AttentionBackend,
    Capabilities,
    CapabilityError,
    Platform,
    PlatformConfig,
)


def pick_attention_backend(
    platform: Platform,
    backends: list[type[AttentionBackend]],
    name: str | None = None,
    dtype: torch.dtype | None = None,
    kv_dtype: torch.dtype | None = None,
) -> tuple[type[AttentionBackend] | None, list[str]]:
    """The backend named ``name``, else the highest-priority available one (that computes in
    ``dtype`` and stores KV as ``kv_dtype`` when given). ``backends`` is ordered best first.
    Returns ``(class or None, reasons the others were passed over)``; a named backend is never
    skipped for its dtypes (the configuration check explains a mismatch)."""
    reasons = []
    for cls in backends:
        if name is not None and cls.name != name:
            continue
        if name is None and dtype is not None and dtype not in cls.kv_dtypes:
            reasons.append(f"{cls.name}: no {dtype} support")
            continue
        if name is None and kv_dtype is not None and kv_dtype not in cls.kv_dtypes:
            reasons.append(f"{cls.name}: no {_kv_name(kv_dtype)} KV cache")
            continue
        ok, why = cls.is_available(platform)
        if ok:
            return cls, reasons
        reasons.append(f"{cls.name}: {why}")
    return None, reasons


def _kv_name(dtype: torch.dtype) -> str:
    """A KV dtype as the user named it (``--kv-cache-dtype fp8``) and as torch does."""
    return f"fp8 ({dtype})" if dtype == torch.float8_e4m3fn else str(dtype)


def resolve_config(
    platform: Platform,
    declared: Capabilities,
    backends: list[type[AttentionBackend]],
    config: PlatformConfig,
) -> tuple[PlatformConfig, type[AttentionBackend]]:
    """Fill the defaults of ``config`` and check it; returns the complete configuration (its
    ``attention_backend`` names the selected backend) and that backend's class.

    Raises :class:`CapabilityError` listing every unsupported setting (nothing is half-applied).
    """
    dtype = config.dtype or platform._default_dtype()
    kv_dtype = config.kv_cache_dtype or dtype
    execution = config.execution
    if execution == "auto":
        execution = platform._default_execution()
    problems = []
    if dtype not in declared.dtypes:
        problems.append(f"dtype {dtype} (supported: {sorted(map(str, declared.dtypes))})")
    names = [b.name for b in backends]
    backend, reasons = pick_attention_backend(platform, backends, config.attention_backend, dtype,
                                              kv_dtype)
    if backend is None:
        if config.attention_backend is not None and config.attention_backend not in names:
            problems.append(f"attention backend {config.attention_backend!r} (known: {names})")
        else:
            what = dtype if kv_dtype == dtype else f"{dtype} with a {_kv_name(kv_dtype)} KV cache"
            problems.append(f"an attention backend for {what} "
                            f"({'; '.join(reasons) or 'the platform lists none'}); "
                            f"--kv-cache-dtype auto keeps KV in the model dtype")
    else:
        if kv_dtype not in backend.kv_dtypes:
            able = [b.name for b in backends if kv_dtype in b.kv_dtypes]
            hint = (f"--attention-backend {' or '.join(able)} stores it"
                    if able else "--kv-cache-dtype auto keeps KV in the model dtype")
            problems.append(f"KV-cache dtype {_kv_name(kv_dtype)} (attention backend "
                            f"{backend.name!r} supports: {sorted(map(str, backend.kv_dtypes))}; "
                            f"{hint})")
        if config.page_size is not None and config.page_size not in backend.page_sizes:
            problems.append(f"page size {config.page_size} (attention backend {backend.name!r} "
                            f"supports: {tuple(backend.page_sizes)})")
        missing = backend.features.missing(config.attention_features)
        if missing:
            problems.append(f"attention features {', '.join(missing)} "
                            f"(attention backend {backend.name!r})")
    if config.quantization is not None and config.quantization not in declared.quantization:
        problems.append(f"quantization {config.quantization!r} (supported: "
                        f"{sorted(declared.quantization) or 'none'}; leave --quantization unset "
                        f"to run the linear layers in the model dtype)")
    if config.world_size > declared.max_world_size:
        problems.append(f"world size {config.world_size} (max {declared.max_world_size})")
    if execution not in EXECUTION_KINDS:
        problems.append(f"execution {execution!r} (one of {EXECUTION_KINDS})")
    elif execution == "graphs" and not declared.graph_capture:
        problems.append("execution 'graphs' (no graph capture)")
    elif execution == "compiled" and not declared.compiled_execution:
        problems.append("execution 'compiled' (no compiled execution)")
    if problems or backend is None:
        raise CapabilityError(
            f"platform {platform.name!r} does not support: " + "; ".join(problems)
            + ". Choose another setting or another --platform (see `anyware platforms`)."
        )
    resolved = replace(
        config,
        dtype=dtype,
        kv_cache_dtype=kv_dtype,
        page_size=config.page_size or backend.page_sizes[0],
        execution=execution,
        attention_backend=backend.name,
    )
    return resolved, backend
