"""anyware_torchdev: a toolkit for platforms whose device is a torch device module
(``torch.cuda`` for NVIDIA and ROCm, ``torch.xpu``, ``torch_npu``'s ``torch.npu``).

A library, not a platform: it registers no entry point. Platform plugins (in this repository
and third-party ones) import it; it imports only ``anyware.plugin`` and ``anyware.kernels``.

* :class:`TorchDevicePlatform` — a ``Platform`` base implementing the device hooks (init,
  count, memory, synchronize, empty_cache, seeds, names, events, host copies, versions) and
  the ``graphs`` execution strategy through ``torch.<device_type>``.
* :class:`TorchGraphExecution` — decode, verify and one-request prefill graphs, captured and
  replayed through any device module with a graph API (:func:`graph_api`,
  :func:`supports_graphs`); :class:`GraphPool` shares one memory pool between strategies.
* probe helpers — :func:`module_importable`, :func:`visible_device_count`,
  :func:`hidden_by_env`, :func:`runtime_compiled`, :func:`unavailable`.

Importing this package imports torch but no vendor runtime and creates no device context.
"""

from anyware_torchdev.graph_api import GRAPH_CLASS_NAMES, GraphAPI, graph_api, supports_graphs
from anyware_torchdev.graphs import (
    GraphPool,
    TorchGraphExecution,
    default_buckets,
    default_prefill_buckets,
)
from anyware_torchdev.platform import TorchDevicePlatform
from anyware_torchdev.probe import (
    hidden_by_env,
    module_importable,
    runtime_compiled,
    unavailable,
    visible_device_count,
)

__version__ = "0.1.0"

__all__ = [
    "GRAPH_CLASS_NAMES",
    "GraphAPI",
    "GraphPool",
    "TorchDevicePlatform",
    "TorchGraphExecution",
    "default_buckets",
    "default_prefill_buckets",
    "graph_api",
    "hidden_by_env",
    "module_importable",
    "runtime_compiled",
    "supports_graphs",
    "unavailable",
    "visible_device_count",
]
