"""The graph-capture API of a torch device module, found by name.

``torch.cuda`` (NVIDIA, and AMD under ROCm's HIP build) has ``CUDAGraph``, ``graph`` and
``graph_pool_handle``; ``torch.xpu`` has ``XPUGraph``, ``graph`` and ``graph_pool_handle`` in
recent torch (2.13 has them); ``torch_npu`` registers ``torch.npu.NPUGraph``, ``torch.npu.graph``
and ``torch.npu.graph_pool_handle``. All three take ``graph(g, pool=..., stream=...)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

from anyware_torchdev.probe import runtime_compiled

GRAPH_CLASS_NAMES = ("CUDAGraph", "XPUGraph", "NPUGraph")


@dataclass(frozen=True)
class GraphAPI:
    """What a graph strategy calls on a device module.

    graph_class: ``CUDAGraph`` / ``XPUGraph`` / ``NPUGraph`` (``capture`` into it, ``replay``).
    graph: the capture context manager, ``graph(g, pool=..., stream=...)``.
    pool_handle: returns a memory-pool handle that graphs captured into it share.
    Stream / stream / current_stream / synchronize: the module's stream API.
    """

    module: ModuleType
    graph_class: type
    graph: Any
    pool_handle: Any
    Stream: Any
    stream: Any
    current_stream: Any
    synchronize: Any


def graph_api(module: ModuleType) -> GraphAPI | None:
    """The graph API of ``module``, or ``None`` when it has no graph capture (an old torch, a
    module without graphs, or a torch build without that runtime)."""
    if not runtime_compiled(module):
        return None
    cls = next((getattr(module, n) for n in GRAPH_CLASS_NAMES if hasattr(module, n)), None)
    names = ("graph", "graph_pool_handle", "Stream", "stream", "current_stream", "synchronize")
    if cls is None or not all(callable(getattr(module, n, None)) for n in names):
        return None
    return GraphAPI(module, cls, module.graph, module.graph_pool_handle, module.Stream,
                    module.stream, module.current_stream, module.synchronize)


def supports_graphs(module: ModuleType) -> bool:
    """Whether ``module`` can capture and replay graphs (declare ``graph_capture`` from it)."""
    return graph_api(module) is not None
