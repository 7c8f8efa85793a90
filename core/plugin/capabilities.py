"""What a platform declares it can do, and what an attention backend declares it implements.

Capabilities are data (rule 6). A platform declares the facts of its device and runtime
(:class:`Capabilities`); an attention backend declares the facts of its kernels as class
attributes (``features``: :class:`AttentionFeatures`, ``page_sizes``, ``kv_dtypes``). Each
fact is declared exactly once: the core combines the two (``anyware.runtime``), checks a request
against the combination at start-up and fails with the reason when something is missing; it
never falls back silently. The conformance suite reads the same combination to decide which
tests apply, and requires every claim to pass.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast", "barrier")
# linear-layer quantization methods (``--quantization``); each names the KernelOps method that
# implements it: "fp8" -> ``KernelOps.fp8_linear`` (W8A8, e4m3)
QUANTIZATIONS = ("fp8",)


@dataclass(frozen=True)
class AttentionFeatures:
    """Attention features a backend implements (its ``features`` class attribute), or that a
    model/engine will use (``PlatformConfig.attention_features``).

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
    padded_verify: a VERIFY batch with ``spec.num_draft_tokens = k`` and no tree mask whose
        requests carry between 1 and ``k + 1`` new tokens each (a chain verify; a graph
        strategy also relabels decode rows and short extends VERIFY), padded to a request
        bucket of ``n`` and to ``n * (k + 1)`` tokens (``padded_batch_size``,
        ``padded_num_tokens``), runs with launch shapes that depend only on ``n`` and ``k``,
        reads every length and the page table from the batch's device tensors, gives the
        real rows the unpadded result and finite values in the rows past the last request.
        Such a forward may be captured once per request bucket and replayed (verify graphs).
        Never wanted by a model; a backend declares it.
    """

    extend_with_prefix: bool = True
    decode: bool = True
    verify: bool = True
    tree_mask: bool = False
    sliding_window: bool = False
    logit_softcap: bool = False
    padded_prefill: bool = False
    padded_verify: bool = False

    def names(self) -> tuple[str, ...]:
        """The names of the features set, in declaration order."""
        return tuple(f.name for f in fields(self) if getattr(self, f.name))

    def missing(self, wanted: AttentionFeatures) -> tuple[str, ...]:
        """Features set in ``wanted`` that this declaration lacks."""
        return tuple(n for n in wanted.names() if not getattr(self, n))


@dataclass(frozen=True)
class Capabilities:
    """What a platform declares about its device and runtime (``Platform._capabilities``).

    KV-cache dtypes, page sizes and attention features are not declared here: they are the
    attention backend's class attributes, and the core derives them from the backend it
    selects (so a platform cannot contradict its own default backend).

    dtypes: model/activation dtypes it computes in.
    graph_capture: it replays captured graphs (``ExecutionStrategy`` kind ``"graphs"``).
    compiled_execution: it runs compiled programs with padded shape buckets (``"compiled"``).
    collectives: the :class:`~anyware.plugin.ops.comm.Communicator` operations it implements.
    max_world_size: the largest number of ranks (one device each) it supports.
    moe: it provides MoE expert compute.
    async_execution: device work runs asynchronously to the host (calls return once the work
        is queued). The engine then overlaps the scheduling of step N+1 with step N by default.
    quantization: linear-layer quantization methods its ops implement (names from
        ``QUANTIZATIONS``; ``"fp8"``: :meth:`~anyware.plugin.KernelOps.fp8_linear`). A platform
        whose support depends on the device it finds (e.g. a minimum compute capability)
        declares the method and refuses it in ``_configure`` with the reason. (2.2)

    Raises ``ValueError`` for a declaration that cannot be true (no dtype, an unknown
    collective or quantization method, ``max_world_size < 1``).
    """

    dtypes: frozenset[torch.dtype]
    graph_capture: bool = False
    compiled_execution: bool = False
    collectives: frozenset[str] = frozenset(COLLECTIVES)
    max_world_size: int = 1
    moe: bool = True
    async_execution: bool = False
    quantization: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        # accept any iterables, store hashable immutable values
        object.__setattr__(self, "dtypes", frozenset(self.dtypes))
        object.__setattr__(self, "collectives", frozenset(self.collectives))
        object.__setattr__(self, "quantization", frozenset(self.quantization))
        if self.max_world_size < 1:
            raise ValueError("max_world_size must be >= 1")
        if not self.dtypes:
            raise ValueError("Capabilities need at least one dtype")
        unknown = set(self.collectives) - set(COLLECTIVES)
        if unknown:
            raise ValueError(f"unknown collectives {sorted(unknown)}; known: {COLLECTIVES}")
        unknown = set(self.quantization) - set(QUANTIZATIONS)
        if unknown:
            raise ValueError(f"unknown quantization methods {sorted(unknown)}; known: "
                             f"{QUANTIZATIONS}")
