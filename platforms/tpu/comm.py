"""`JaxCommunicator`: the `Communicator` contract over JAX collectives (multi-controller JAX).

The contract is per rank: one process per rank, every rank calls the same operation with its
own tensor. In JAX that is *multi-controller* SPMD: each process calls
``jax.distributed.initialize`` (done by the platform's ``init_device`` when the launcher set
``WORLD_SIZE > 1``; see :func:`anyware_tpu.jaxenv.init_distributed`), after which
``jax.devices()`` lists every process's devices. The communicator builds a one-axis mesh
(``"ranks"``) with one device per rank (rank ``r`` uses its local device ``r % local``, as the
launcher's ``local_rank``), makes each rank's tensor the rank's shard of a global array
(``make_array_from_single_device_arrays``) and runs a jitted ``shard_map`` of
``lax.psum`` / ``all_gather`` / ``psum_scatter`` / ``all_to_all``; the rank's result is its
addressable shard. On a TPU the collectives run over ICI; on JAX's CPU backend over gloo
(``jax_cpu_collectives_implementation``).

This is not how the tpu platform's in-process tensor parallelism works (``tpu_tp``, one
process driving several devices, XLA inserting the collectives: :mod:`anyware_tpu.mesh`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from anyware.plugin import Communicator
from anyware.plugin.errors import CapabilityError
from anyware_tpu import jaxenv

AXIS = "ranks"


class JaxCommunicator(Communicator):
    name = "jax"

    def __init__(self, rank: int, world_size: int) -> None:
        super().__init__(rank, world_size)
        jax = jaxenv.jax_module()
        if jax.process_count() != world_size or jax.process_index() != rank:
            raise CapabilityError(
                f"the jax communicator needs one JAX process per rank: this process is "
                f"{jax.process_index()} of {jax.process_count()}, asked for rank {rank} of "
                f"{world_size}; launch each rank with RANK / WORLD_SIZE / MASTER_ADDR / "
                "MASTER_PORT set (as torchrun does) before the platform's init_device")
        from jax.sharding import Mesh

        by_proc: dict[int, list[Any]] = {}
        for d in jax.devices():
            by_proc.setdefault(d.process_index, []).append(d)
        devices = []
        for p in range(world_size):
            local = sorted(by_proc[p], key=lambda d: d.id)
            devices.append(local[p % len(local)])
        self.device = devices[rank]
        self.mesh = Mesh(np.array(devices), (AXIS,))
        self._fns: dict[tuple, Callable] = {}

    # ------------------------------------------------------------------ plumbing
    def _fn(self, key: tuple, body: Callable) -> Callable:
        """A jitted ``shard_map`` of ``body`` over the ranks axis (built once per key; jit
        compiles once per shape and dtype)."""
        if key not in self._fns:
            jax = jaxenv.jax_module()
            from jax.sharding import PartitionSpec as P

            self._fns[key] = jax.jit(jax.shard_map(body, mesh=self.mesh, in_specs=P(AXIS),
                                                   out_specs=P(AXIS)))
        return self._fns[key]

    def _global(self, x: torch.Tensor) -> Any:
        """This rank's ``x`` as its shard of a global array (stacked along axis 0)."""
        jax = jaxenv.jax_module()
        from jax.sharding import NamedSharding
        from jax.sharding import PartitionSpec as P

        local = jax.device_put(jaxenv.to_jax(x.reshape(-1, *x.shape[1:]) if x.dim() else
                                             x.reshape(1)), self.device)
        shape = (local.shape[0] * self.world_size, *local.shape[1:])
        return jax.make_array_from_single_device_arrays(
            shape, NamedSharding(self.mesh, P(AXIS)), [local])

    def _local(self, out: Any, like: torch.Tensor) -> torch.Tensor:
        shard = next(s.data for s in out.addressable_shards if s.device == self.device)
        return jaxenv.to_torch(shard, like.dtype).to(like.device)

    def _run(self, key: tuple, body: Callable, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self._local(self._fn(key, body)(self._global(x)), x)

    # ------------------------------------------------------------------ Communicator
    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        lax = jaxenv.jax_module().lax
        return self._run(("all_reduce",), lambda a: lax.psum(a, AXIS), x)

    def all_gather(self, x: torch.Tensor, dim: int = 0) -> torch.Tensor:
        lax = jaxenv.jax_module().lax
        dim = dim % x.dim()
        return self._run(("all_gather", dim),
                         lambda a: lax.all_gather(a, AXIS, axis=dim, tiled=True), x)

    def reduce_scatter(self, x: torch.Tensor, dim: int = 0) -> torch.Tensor:
        lax = jaxenv.jax_module().lax
        dim = dim % x.dim()
        if x.shape[dim] % self.world_size:
            raise ValueError(f"reduce_scatter: dim {dim} of size {x.shape[dim]} does not split "
                             f"over {self.world_size} ranks")
        return self._run(("reduce_scatter", dim),
                         lambda a: lax.psum_scatter(a, AXIS, scatter_dimension=dim, tiled=True), x)

    def all_to_all(self, x: torch.Tensor, output_split_sizes: list[int] | None = None,
                   input_split_sizes: list[int] | None = None) -> torch.Tensor:
        lax = jaxenv.jax_module().lax
        w = self.world_size

        def exchange(t: torch.Tensor) -> torch.Tensor:
            return self._run(("all_to_all",), lambda a: lax.all_to_all(
                a, AXIS, split_axis=0, concat_axis=0, tiled=True), t)

        if output_split_sizes is None and input_split_sizes is None:
            if x.shape[0] % w:
                raise ValueError(f"all_to_all: {x.shape[0]} rows do not split over {w} ranks "
                                 "(pass input_split_sizes / output_split_sizes)")
            return exchange(x)
        ins = input_split_sizes or [x.shape[0] // w] * w
        # uneven chunks: agree on the largest chunk, pad every chunk to it, exchange, trim
        sizes = self.all_gather(torch.tensor([ins], dtype=torch.int32)).tolist()  # [w, w]
        outs = output_split_sizes or [sizes[j][self.rank] for j in range(w)]
        m = max(1, max(max(r) for r in sizes))
        padded = x.new_zeros((w * m, *x.shape[1:]))
        for j, chunk in enumerate(x.split(ins)):
            padded[j * m : j * m + chunk.shape[0]] = chunk
        got = exchange(padded)
        return torch.cat([got[j * m : j * m + outs[j]] for j in range(w)])

    def broadcast(self, x: torch.Tensor, src: int = 0) -> torch.Tensor:
        lax = jaxenv.jax_module().lax
        rows = max(1, x.shape[0]) if x.dim() else 1
        out = self._run(("broadcast", src), lambda a: lax.all_gather(
            a, AXIS, axis=0, tiled=True)[src * rows : (src + 1) * rows], x)
        x.copy_(out.reshape(x.shape))
        return x

    def barrier(self) -> None:
        lax = jaxenv.jax_module().lax
        out = self._fn(("barrier",), lambda a: lax.psum(a, AXIS))(
            self._global(torch.ones(1, dtype=torch.float32)))
        out.block_until_ready()
        self.calls += 1
