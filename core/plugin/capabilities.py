"""What a platform (and each of its attention backends) declares it can do.

Capabilities are data. The engine checks a request against them at start-up and fails with
the reason when something is missing; it never falls back silently. The conformance suite
reads the same declaration to decide which tests apply, and requires every claim to pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch

COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast", "barrier")


@dataclass(frozen=True)
class AttentionFeatures:
    """Attention features a backend implements.

    extend_with_prefix: prefill of new tokens on top of KV already in the cache.
    decode: one new token per request.
    verify: several new tokens per request with logits for each (speculative verify).
    tree_mask: a per-request custom boolean mask over draft tokens (tree verify).
    sliding_window: attention limited to the last ``window`` positions.
    logit_softcap: ``cap * tanh(score / cap)`` applied to attention scores.
    padded_prefill: an EXTEND batch of one request without prefix whose tokens a graph
        strategy padded at the end (``ForwardBatch.padded_num_tokens``) runs with launch shapes
        that depend only on the padded token count, reads the real lengths from the batch's
        device tensors, and gives the real rows the unpadded result. Such a forward may be
        captured once per token bucket and replayed (prefill graphs). Never wanted by a
        model; a backend declares it.
    """

    extend_with_prefix: bool = True
    decode: bool = True
    verify: bool = True
    tree_mask: bool = False
    sliding_window: bool = False
    logit_softcap: bool = False
    padded_prefill: bool = False

    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self) if getattr(self, f.name))

    def missing(self, wanted: AttentionFeatures) -> tuple[str, ...]:
        """Features set in ``wanted`` that this declaration lacks."""
        return tuple(n for n in wanted.names() if not getattr(self, n))


@dataclass(frozen=True)
class Capabilities:
    """A platform's declared capabilities.

    dtypes: model/activation dtypes it computes in.
    kv_cache_dtypes: dtypes the KV cache may be stored in.
    page_sizes: KV page sizes (tokens per page) its default attention backend accepts.
    attention: features of its default attention backend.
    graph_capture: it replays captured graphs (``ExecutionStrategy`` kind ``"graphs"``).
    compiled_execution: it runs compiled programs with padded shape buckets (``"compiled"``).
    collectives: the :class:`~anyware.plugin.ops.comm.Communicator` operations it implements.
    max_world_size: the largest number of ranks (one device each) it supports.
    moe: it provides MoE expert compute.
    async_execution: device work runs asynchronously to the host (calls return once the work
        is queued). The engine then overlaps the scheduling of step N+1 with step N by default.
    """

    dtypes: frozenset[torch.dtype]
    kv_cache_dtypes: frozenset[torch.dtype]
    page_sizes: tuple[int, ...]
    attention: AttentionFeatures = field(default_factory=AttentionFeatures)
    graph_capture: bool = False
    compiled_execution: bool = False
    collectives: frozenset[str] = frozenset(COLLECTIVES)
    max_world_size: int = 1
    moe: bool = True
    async_execution: bool = False

    def __post_init__(self) -> None:
        # accept any iterables, store hashable immutable values
        object.__setattr__(self, "dtypes", frozenset(self.dtypes))
        object.__setattr__(self, "kv_cache_dtypes", frozenset(self.kv_cache_dtypes))
        object.__setattr__(self, "collectives", frozenset(self.collectives))
        object.__setattr__(self, "page_sizes", tuple(self.page_sizes))
        if self.max_world_size < 1:
            raise ValueError("max_world_size must be >= 1")
        if not self.dtypes or not self.kv_cache_dtypes or not self.page_sizes:
            raise ValueError("Capabilities need at least one dtype, KV dtype and page size")
        unknown = set(self.collectives) - set(COLLECTIVES)
        if unknown:
            raise ValueError(f"unknown collectives {sorted(unknown)}; known: {COLLECTIVES}")
        if any(p < 1 for p in self.page_sizes):
            raise ValueError("page sizes must be positive")

    def to_dict(self) -> dict:
        """JSON-ready form (reports, ``anyware platforms --json``)."""

        def names(dtypes) -> list[str]:
            return sorted(str(d).removeprefix("torch.") for d in dtypes)

        return {
            "dtypes": names(self.dtypes),
            "kv_cache_dtypes": names(self.kv_cache_dtypes),
            "page_sizes": list(self.page_sizes),
            "attention": list(self.attention.names()),
            "graph_capture": self.graph_capture,
            "compiled_execution": self.compiled_execution,
            "collectives": sorted(self.collectives),
            "max_world_size": self.max_world_size,
            "moe": self.moe,
            "async_execution": self.async_execution,
        }

    def summary(self) -> str:
        """One line for ``anyware platforms``."""
        dt = ",".join(sorted(str(d).removeprefix("torch.") for d in self.dtypes))
        pages = ",".join(str(p) for p in self.page_sizes)
        extras = [n for n in ("graph_capture", "compiled_execution", "moe") if getattr(self, n)]
        return (
            f"dtypes={dt} pages={pages} attn={'+'.join(self.attention.names())} "
            f"world<={self.max_world_size}" + (f" {' '.join(extras)}" if extras else "")
        )
