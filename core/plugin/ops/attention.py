"""The attention-backend interface and the KV-cache layout it declares.

A backend owns the layout of the KV cache (rule 8: the layout is data). The core's KV pool
asks the backend for a :class:`KVLayout`, allocates one K and one V tensor per layer through
the platform, and hands the backend a :class:`KVCache` plus page tables in every
:class:`~anyware.plugin.forward.ForwardBatch`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from anyware.plugin.capabilities import AttentionFeatures
from anyware.plugin.forward import ForwardBatch

if TYPE_CHECKING:
    from anyware.plugin.platform import Platform


@dataclass(frozen=True)
class AttentionSpec:
    """The model-level attention shape a backend is built for."""

    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    v_head_dim: int
    dtype: torch.dtype
    max_batch_size: int
    max_context_len: int


@dataclass(frozen=True)
class AttentionLayer:
    """Static per-layer attention parameters.

    scale: softmax scale (usually ``head_dim ** -0.5``).
    sliding_window: attend only to the last ``sliding_window`` positions (``None``: all).
    logit_softcap: apply ``cap * tanh(s / cap)`` to scores (``None``: off).
    """

    layer_id: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    v_head_dim: int
    scale: float
    sliding_window: int | None = None
    logit_softcap: float | None = None


@dataclass(frozen=True)
class KVLayout:
    """How one layer's KV cache is laid out in device memory.

    K is ``[num_slots, num_kv_heads, head_dim]`` and V is
    ``[num_slots, num_kv_heads, v_head_dim]`` with ``num_slots = num_pages * page_size`` and
    ``slot = page * page_size + offset``. Page 0 is reserved by the pool as a scratch page
    (padded rows of captured graphs write there), so usable pages are ``1 .. num_pages-1``.
    alignment: ``num_pages`` is rounded up to a multiple of this.
    interleaved: K and V live in one tensor per layer, ``[num_pages, page_size,
    2 * num_kv_heads, head_dim]`` (:meth:`kv_shape`), K head ``h`` at index ``2h`` and V head
    ``h`` at ``2h + 1`` (needs ``v_head_dim == head_dim``); :meth:`allocate` also gives K and V
    as strided views of it in the shapes above, so code that addresses K/V by slot works on
    either layout.
    head_major: the "HND" order: K is ``[num_pages, num_kv_heads, page_size, head_dim]`` and V
    ``[num_pages, num_kv_heads, page_size, v_head_dim]`` (each head's tokens of a page are
    contiguous), so slot ``s`` of head ``h`` is at ``[s // page_size, h, s % page_size]``.
    Such tensors cannot be viewed as ``[num_slots, ...]``: address slots through
    :meth:`slot_index`, which works for every layout (slot-ordered code such as
    ``KernelOps.store_kv`` does not apply). Not combinable with ``interleaved``. (Since
    plugin API 2.1.)
    """

    page_size: int
    num_kv_heads: int
    head_dim: int
    v_head_dim: int
    dtype: torch.dtype
    alignment: int = 1
    interleaved: bool = False
    head_major: bool = False

    def __post_init__(self) -> None:
        if self.head_major and self.interleaved:
            raise ValueError("a KV layout is either head_major (HND) or interleaved, not both")

    def k_shape(self, num_pages: int) -> tuple[int, ...]:
        if self.head_major:
            return (num_pages, self.num_kv_heads, self.page_size, self.head_dim)
        return (num_pages * self.page_size, self.num_kv_heads, self.head_dim)

    def v_shape(self, num_pages: int) -> tuple[int, ...]:
        if self.head_major:
            return (num_pages, self.num_kv_heads, self.page_size, self.v_head_dim)
        return (num_pages * self.page_size, self.num_kv_heads, self.v_head_dim)

    def slot_index(self, slots: torch.Tensor) -> tuple:
        """The index of ``slots`` (a 1-D integer tensor) in one layer's K or V tensor of this
        layout: ``t[layout.slot_index(slots)]`` is ``[len(slots), num_kv_heads, dim]`` and
        assignable (``t[idx] = values`` writes those slots), whatever the order."""
        if not self.head_major:
            return (slots,)
        return (torch.div(slots, self.page_size, rounding_mode="floor"), slice(None),
                slots % self.page_size)

    def kv_shape(self, num_pages: int) -> tuple[int, ...]:
        """The one tensor per layer of the interleaved layout."""
        return (num_pages, self.page_size, 2 * self.num_kv_heads, self.head_dim)

    def allocate(self, platform: Platform, num_layers: int, num_pages: int) -> KVCache:
        """Zeroed per-layer KV tensors of this layout, allocated through ``platform``."""
        if not self.interleaved:
            return KVCache(self, [platform.allocate(self.k_shape(num_pages), self.dtype)
                                  for _ in range(num_layers)],
                           [platform.allocate(self.v_shape(num_pages), self.dtype)
                            for _ in range(num_layers)], num_pages)
        if self.v_head_dim != self.head_dim:
            raise ValueError("the interleaved KV layout needs v_head_dim == head_dim")
        kv = [platform.allocate(self.kv_shape(num_pages), self.dtype) for _ in range(num_layers)]
        slots = [t.view(num_pages * self.page_size, self.num_kv_heads, 2, self.head_dim)
                 for t in kv]
        return KVCache(self, [s[:, :, 0] for s in slots], [s[:, :, 1] for s in slots],
                       num_pages, kv=kv)

    def bytes_per_page(self) -> int:
        per_token = self.num_kv_heads * (self.head_dim + self.v_head_dim)
        return per_token * self.page_size * torch.empty((), dtype=self.dtype).element_size()


@dataclass
class KVCache:
    """Per-layer K and V tensors allocated by the pool according to ``layout``.

    kv: the per-layer storage of the interleaved layout (``k``/``v`` are views of it).
    An execution strategy that keeps the cache as functional device state (compiled programs
    that take it in and give it back) replaces these entries after each step; ``k``/``v``
    views then describe the host tensors allocated at start-up, not the live state.
    """

    layout: KVLayout
    k: list[torch.Tensor]
    v: list[torch.Tensor]
    num_pages: int
    kv: list[torch.Tensor] | None = None


class AttentionBackend(ABC):
    """Paged attention for extend, decode and verify batches.

    Class attributes declare what the backend offers, once (rule 6): ``name`` (what
    ``--attention-backend`` takes), ``features`` (:class:`AttentionFeatures`), ``page_sizes``
    (the first is the default), ``kv_dtypes`` (the dtypes it stores KV in and computes with;
    listing ``torch.float8_e4m3fn`` — ``--kv-cache-dtype fp8`` — promises K/V stored at scale
    1.0, saturated to +-448 and rounded to nearest even, and read back into the model dtype),
    ``priority`` (higher wins). The platform lists backends (its own and those contributed by
    extension plugins); the core selects one by name or priority, and the selected backend's
    declarations are the platform's effective KV dtypes, page sizes and attention features.

    Lifecycle: constructed once per model after init_device (``cls(platform, spec)``);
    ``kv_layout`` once, before the KV pool is allocated; ``init_graph_buffers`` once if a
    graph strategy captures. Call order per step: ``prepare(batch)`` once on the host (dynamic
    shapes allowed; may allocate), then ``update(batch)`` (graph-safe: only device copies into
    buffers allocated in ``prepare``/``init_graph_buffers``, no host sync, no allocation), then
    ``forward`` for every layer. An eager strategy calls both; a graph strategy calls
    ``prepare`` when it captures and ``update`` before each replay.
    """

    name: ClassVar[str]
    features: ClassVar[AttentionFeatures] = AttentionFeatures()
    page_sizes: ClassVar[tuple[int, ...]] = (1, 16, 64)
    kv_dtypes: ClassVar[tuple[torch.dtype, ...]] = (torch.float32, torch.bfloat16, torch.float16)
    priority: ClassVar[int] = 0

    def __init__(self, platform: Platform, spec: AttentionSpec) -> None:
        """``platform``: the plugin instance (``platform.device`` is set); ``spec``: the
        model's attention shape for this rank. May allocate device workspaces; may not
        allocate the KV cache (the core's pool does, from ``kv_layout``)."""
        self.platform = platform
        self.spec = spec
        self.calls = 0  # forward calls: the conformance suite's proof that this kernel ran

    @classmethod
    def is_available(cls, platform: Platform) -> tuple[bool, str]:
        """Whether this backend can run on ``platform``: ``(True, "")`` or ``(False, reason)``
        where the reason says what to do ("pip install acme-fastattn").

        Called: whenever the core picks a backend or derives capabilities — also before
        init_device and for ``anyware platforms``; possibly many times. May not: import heavy
        libraries (``importlib.util.find_spec`` is fine), touch the device, or raise.
        Default: available."""
        return True, ""

    def kv_layout(self, page_size: int, kv_dtype: torch.dtype) -> KVLayout:
        """The KV layout of one layer for ``page_size`` tokens per page stored as ``kv_dtype``.

        Called: once, after construction and before the KV pool is allocated, with the
        configured page size and KV dtype. Returns: a :class:`KVLayout` (same for every
        layer). Raises ``ValueError`` for a page size or dtype the class does not declare.
        May not: allocate (the pool allocates through the platform)."""
        if page_size not in self.page_sizes:
            raise ValueError(
                f"attention backend {self.name!r} supports page sizes {self.page_sizes}, "
                f"not {page_size}"
            )
        if kv_dtype not in self.kv_dtypes:
            raise ValueError(f"attention backend {self.name!r} does not store KV as {kv_dtype}")
        s = self.spec
        return KVLayout(page_size, s.num_kv_heads, s.head_dim, s.v_head_dim, kv_dtype)

    def prepare(self, batch: ForwardBatch) -> None:  # noqa: B027 - optional hook
        """Host-side preparation for ``batch``: plan kernels, build metadata.

        Called: once per step before the forward (eager), or once per captured shape at
        capture time (graphs). May read the ``*_cpu`` lists of the batch and allocate; may
        not launch the attention itself. Default: nothing."""

    def init_graph_buffers(self, max_batch_size: int, max_pages_per_req: int) -> None:  # noqa: B027
        """Allocate persistent metadata buffers for graph capture of batches up to
        ``max_batch_size`` requests of up to ``max_pages_per_req`` pages each.

        Called: once, by a graph strategy before its first capture. After it, ``update``
        writes only into these buffers. Default: nothing."""

    def update(self, batch: ForwardBatch) -> None:  # noqa: B027 - optional hook
        """Graph-safe update of the device metadata for ``batch``.

        Called: every step after ``prepare`` (eager) or before each graph replay. May only
        copy into device buffers that already exist: no host synchronisation, no allocation,
        no reads of ``*_cpu`` lists that a replay would not see. Default: nothing."""

    @abstractmethod
    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        layer: AttentionLayer,
        cache: KVCache,
        batch: ForwardBatch,
    ) -> torch.Tensor:
        """Store the new K/V and attend.

        q: ``[T, num_heads, head_dim]``; k: ``[T, num_kv_heads, head_dim]``;
        v: ``[T, num_kv_heads, v_head_dim]`` (rotary already applied), in the model dtype.
        First write ``k``/``v`` into ``cache.k[layer.layer_id]``/``cache.v[...]`` at
        ``batch.out_slots``; then every new token attends (causally, or by
        ``batch.spec.tree_mask`` in VERIFY mode) over its request's cached prefix and the new
        tokens. GQA: query head ``h`` reads KV head ``h // (num_heads // num_kv_heads)``.
        Returns ``[T, num_heads, v_head_dim]`` in the model dtype.

        Called: once per layer per forward, possibly inside graph capture: no host sync, no
        allocation that outlives the call, and ``self.calls += 1`` (the conformance suite's
        proof that this kernel ran).
        """
