"""A fake torch device module for the vendor plugins' graph declarations: the stream API every
device module has, plus (optionally) a graph API under the vendor's class name."""

from __future__ import annotations

import contextlib
import types


def fake_device_module(graph_class: str | None, name: str = "fakedev") -> types.ModuleType:
    """A module with streams, counts and memory; with ``graph_class`` (``"CUDAGraph"``,
    ``"XPUGraph"``, ``"NPUGraph"``) also ``graph`` and ``graph_pool_handle``."""
    mod = types.ModuleType(name)

    class Stream:
        def wait_stream(self, other):
            pass

        def synchronize(self):
            pass

    mod.Stream, mod.current_stream = Stream, Stream
    mod.stream = contextlib.nullcontext
    mod.synchronize = lambda device=None: None
    mod.device_count = lambda: 2
    if graph_class is not None:
        setattr(mod, graph_class, type(graph_class, (), {"replay": lambda self: None}))
        mod.graph = lambda g, pool=None, stream=None: contextlib.nullcontext()
        mod.graph_pool_handle = lambda: ("pool",)
    return mod
