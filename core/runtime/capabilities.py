"""The effective capabilities of a platform: its declaration combined with the attention
backend's, each fact declared once (rule 6).

A platform declares device/runtime facts (:class:`~anyware.plugin.Capabilities`); an attention
backend declares its KV-cache dtypes, page sizes and features as class attributes. The core
derives the combination here, so a platform cannot contradict the backend it runs. Start-up
checks, ``anyware platforms`` and the conformance suite's applicability all read this.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from anyware.plugin import AttentionBackend, AttentionFeatures, Capabilities, PluginError


def _dtype_names(dtypes) -> list[str]:
    return sorted(str(d).removeprefix("torch.") for d in dtypes)


@dataclass(frozen=True)
class EffectiveCapabilities:
    """What a platform offers with one attention backend.

    From the platform's declaration: dtypes, graph_capture, compiled_execution, collectives,
    max_world_size, moe, async_execution, quantization (see :class:`~anyware.plugin.Capabilities`).
    From the attention backend (``attention_backend`` names it): kv_cache_dtypes (its
    ``kv_dtypes``), page_sizes (its ``page_sizes``, the first is the default) and attention
    (its ``features``).
    """

    dtypes: frozenset[torch.dtype]
    kv_cache_dtypes: frozenset[torch.dtype]
    page_sizes: tuple[int, ...]
    attention: AttentionFeatures
    attention_backend: str
    graph_capture: bool
    compiled_execution: bool
    collectives: frozenset[str]
    max_world_size: int
    moe: bool
    async_execution: bool
    quantization: frozenset[str] = frozenset()

    @classmethod
    def derive(cls, declared: Capabilities, backend: type[AttentionBackend]) -> EffectiveCapabilities:
        """Combine a platform's declaration with ``backend``'s class attributes. Raises
        :class:`PluginError` naming the backend when its declaration cannot be true."""
        name = getattr(backend, "name", backend.__name__)
        page_sizes = tuple(backend.page_sizes)
        kv_dtypes = frozenset(backend.kv_dtypes)
        problems = []
        if not page_sizes or any(not isinstance(p, int) or p < 1 for p in page_sizes):
            problems.append(f"page_sizes {page_sizes!r} (need positive ints)")
        if not kv_dtypes:
            problems.append("no kv_dtypes")
        if not isinstance(backend.features, AttentionFeatures):
            problems.append(f"features {backend.features!r} is not AttentionFeatures")
        if problems:
            raise PluginError(f"attention backend {name!r} declares {'; '.join(problems)}")
        return cls(
            dtypes=declared.dtypes,
            kv_cache_dtypes=kv_dtypes,
            page_sizes=page_sizes,
            attention=backend.features,
            attention_backend=name,
            graph_capture=declared.graph_capture,
            compiled_execution=declared.compiled_execution,
            collectives=declared.collectives,
            max_world_size=declared.max_world_size,
            moe=declared.moe,
            async_execution=declared.async_execution,
            quantization=declared.quantization,
        )

    def to_dict(self) -> dict:
        """JSON-ready form (reports, ``anyware platforms --json``)."""
        return {
            "dtypes": _dtype_names(self.dtypes),
            "kv_cache_dtypes": _dtype_names(self.kv_cache_dtypes),
            "page_sizes": list(self.page_sizes),
            "attention": list(self.attention.names()),
            "attention_backend": self.attention_backend,
            "graph_capture": self.graph_capture,
            "compiled_execution": self.compiled_execution,
            "collectives": sorted(self.collectives),
            "max_world_size": self.max_world_size,
            "moe": self.moe,
            "async_execution": self.async_execution,
            "quantization": sorted(self.quantization),
        }

    def summary(self) -> str:
        """One line for ``anyware platforms``."""
        dt = ",".join(_dtype_names(self.dtypes))
        pages = ",".join(str(p) for p in self.page_sizes)
        extras = [n for n in ("graph_capture", "compiled_execution", "moe") if getattr(self, n)]
        extras += [f"quant={q}" for q in sorted(self.quantization)]
        return (
            f"dtypes={dt} pages={pages} attn={self.attention_backend}:"
            f"{'+'.join(self.attention.names())} world<={self.max_world_size}"
            + (f" {' '.join(extras)}" if extras else "")
        )
