"""In-process tensor parallelism (``tpu_tp=N``): one process drives ``N`` local devices and
XLA partitions the compiled step (GSPMD).

This is JAX's single-controller SPMD, unlike the core's tensor parallelism (issue 15: one
process per rank, ``torch.distributed``, the model's code calling the ``Communicator``). Here
the core sees world size 1: the model's torch code is unchanged, the compiled strategy places
each parameter on a ``("tp",)`` mesh with a ``NamedSharding`` and XLA inserts the collectives
(all-reduces after the row-parallel matmuls, gathers where a sharded value meets a replicated
one). Layouts, the Megatron way for a Llama-style block:

* column-parallel (output features split): ``qkv_proj``, ``gate_up_proj``, the LM head and
  the embedding table (vocab split);
* row-parallel (input features split): ``o_proj``, ``down_proj``;
* the KV cache split on its head axis (``[pages, page_size, 2*kv_heads, D]``, axis 2: K/V
  pairs stay together); everything else replicated.

A weight whose dimension does not split evenly stays replicated (correct, just not sharded):
GSPMD keeps the program's meaning whatever the layout, so these choices change speed and
memory per device, never the result beyond the order of floating-point sums.
"""

from __future__ import annotations

from typing import Any

COLUMN = ("qkv_proj.weight", "gate_up_proj.weight", "lm_head.weight", "embed_tokens.weight",
          "gate_up.weight", "w13", "w1", "w3")
ROW = ("o_proj.weight", "down_proj.weight", "w2")


class TensorParallelMesh:
    """A ``("tp",)`` mesh over the first ``size`` local devices and the shardings of the
    compiled step's inputs and state."""

    def __init__(self, size: int) -> None:
        import numpy as np
        from anyware.plugin.errors import CapabilityError
        from anyware_tpu.jaxenv import jax_module

        jax = jax_module()
        devices = jax.local_devices()
        if size > len(devices):
            raise CapabilityError(
                f"tpu_tp={size} needs {size} local devices, JAX sees {len(devices)} "
                "(on the CPU: XLA_FLAGS=--xla_force_host_platform_device_count=N before JAX starts)")
        from jax.sharding import Mesh

        self.size = size
        self.mesh = Mesh(np.array(devices[:size]), ("tp",))

    def _sharding(self, spec: tuple) -> Any:
        from jax.sharding import NamedSharding
        from jax.sharding import PartitionSpec as P

        return NamedSharding(self.mesh, P(*spec))

    def replicated(self) -> Any:
        return self._sharding(())

    def param(self, name: str, shape: tuple[int, ...]) -> Any:
        """The sharding of parameter ``name`` (column/row-parallel by name, else replicated)."""
        spec: list[str | None] = [None] * len(shape)
        if len(shape) >= 2 and name.endswith(COLUMN):
            dim = len(shape) - 2  # [.., out, in] (an expert stack keeps its leading axis)
        elif len(shape) >= 2 and name.endswith(ROW):
            dim = len(shape) - 1
        else:
            return self.replicated()
        if shape[dim] % self.size:
            return self.replicated()
        spec[dim] = "tp"
        return self._sharding(tuple(spec))

    def kv(self, shape: tuple[int, ...]) -> Any:
        """The KV cache ``[pages, page_size, 2*kv_heads, D]`` split on whole K/V head pairs."""
        if len(shape) == 4 and (shape[2] // 2) % self.size == 0:
            return self._sharding((None, None, "tp", None))
        return self.replicated()
