"""The torchax environment and conversions between torch tensors and JAX arrays.

torchax is imported lazily (the probe must not import it), through the compatibility shim
(:mod:`anyware_tpu.compat`). The persistent compilation cache is configured here, once per
process, before the first compile.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any

import torch
from anyware_tpu.compat import torchax_import_shim

log = logging.getLogger(__name__)

CACHE_ENV = "ANYWARE_JAX_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$ANYWARE_JAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/anyware/jax`` (``~/.cache/...``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "anyware" / "jax"


@functools.cache
def jax_module() -> Any:
    """``jax``, configured: the persistent compilation cache in :func:`default_cache_dir`
    (every program, however quick to compile, so a restart re-uses bucket programs)."""
    import jax

    cache = default_cache_dir()
    if cache.as_posix() != "off":
        cache.mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", cache.as_posix())
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return jax


@functools.cache
def torchax_env() -> Any:
    """torchax's default environment, built once (inside the compatibility shim)."""
    jax_module()
    with torchax_import_shim():
        import torchax

        env = torchax.default_env()
    for op, impl in _MISSING_LOWERINGS.items():
        env.override_op_definition(op, impl)
    return env


# ops torchax 0.0.13 has no lowering for, which the core's models use (as torch functions of
# torchax tensors: torchax lowers what they call)
_MISSING_LOWERINGS = {
    torch.ops.aten.view_as: lambda x, other: x.reshape(other.shape),  # Qwen3's q/k norm
}


COORDINATOR_ENV = "ANYWARE_JAX_COORDINATOR"


def launch_env() -> tuple[int, int] | None:
    """``(rank, world_size)`` when a launcher started this process as one of several ranks
    (``WORLD_SIZE > 1`` and ``RANK``, the torchrun convention), else ``None``."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return None
    return int(os.environ.get("RANK", "0") or 0), world


def coordinator_address() -> str:
    """``$ANYWARE_JAX_COORDINATOR``, else ``MASTER_ADDR:(MASTER_PORT + 1)`` (the port after
    torch.distributed's store, which the launcher found free)."""
    if os.environ.get(COORDINATOR_ENV):
        return os.environ[COORDINATOR_ENV]
    port = int(os.environ.get("MASTER_PORT", "29500")) + 1
    return f"{os.environ.get('MASTER_ADDR', '127.0.0.1')}:{port}"


@functools.cache
def init_distributed(rank: int, world_size: int) -> None:
    """Join the multi-controller JAX job (``jax.distributed.initialize``); must run before
    JAX's backends start (the platform's ``init_device`` calls it first). On the CPU backend
    the collectives run over gloo."""
    jax = jax_module()
    if backends_started():
        raise RuntimeError("JAX started its backends before jax.distributed.initialize; the "
                           "tpu platform's init_device must be the first thing to use JAX")
    if backend_hint() == "cpu":
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    log.info("joining the JAX job as process %d of %d (coordinator %s)", rank, world_size,
             coordinator_address())
    jax.distributed.initialize(coordinator_address(), num_processes=world_size, process_id=rank)


def backends_started() -> bool:
    """Whether JAX has created its backends (then device counts are cheap and exact)."""
    jax_module()
    from jax._src import xla_bridge

    return xla_bridge.backends_are_initialized()


def backend_hint() -> str:
    """The backend JAX will pick, without starting it: "tpu" when a TPU is visible, else the
    ``JAX_PLATFORMS`` choice, else "cpu"."""
    from anyware_tpu.probe import tpu_visible

    if tpu_visible():
        return "tpu"
    return (os.environ.get("JAX_PLATFORMS") or "cpu").split(",")[0]


def local_device_count_hint() -> int:
    """Devices this process will see, without starting a backend: the TPU chips
    (``/dev/accel*``, ``/dev/vfio/*``) or the host platform's device count
    (``--xla_force_host_platform_device_count`` / ``jax_num_cpu_devices``, default 1)."""
    import glob
    import re

    if backend_hint() == "tpu":
        return max(1, len(glob.glob("/dev/accel*")) or len(glob.glob("/dev/vfio/[0-9]*")))
    m = re.search(r"--xla_force_host_platform_device_count=(\d+)", os.environ.get("XLA_FLAGS", ""))
    if m:
        return int(m.group(1))
    n = jax_module().config.jax_num_cpu_devices
    return n if n and n > 0 else 1


def backend() -> str:
    """JAX's default backend: "tpu", "gpu" or "cpu"."""
    return jax_module().default_backend()


JAX_DTYPES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16",
              torch.int32: "int32", torch.int64: "int32", torch.bool: "bool"}


def to_jax(t: torch.Tensor) -> Any:
    """A torch tensor (host or torchax) as a JAX array; int64 becomes int32 (JAX runs without
    x64; token ids, positions and slots fit)."""
    jnp = jax_module().numpy
    if is_torchax(t):
        return t.jax()
    if t.dtype == torch.bfloat16:
        return jnp.asarray(t.detach().view(torch.int16).cpu().numpy()).view(jnp.bfloat16)
    arr = t.detach().cpu().numpy()
    return jnp.asarray(arr, dtype=JAX_DTYPES.get(t.dtype))


def to_torch(a: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A JAX array as a host torch tensor (``dtype`` casts, e.g. back to int64)."""
    import numpy as np

    jnp = jax_module().numpy
    if a.dtype == jnp.bfloat16:
        out = torch.from_numpy(np.array(a.view(jnp.int16))).view(torch.bfloat16)
    else:
        out = torch.from_numpy(np.array(a))
    return out if dtype is None else out.to(dtype)


def is_torchax(t: Any) -> bool:
    return type(t).__module__.startswith("torchax")


def wrap(a: Any) -> torch.Tensor:
    """A JAX array (or tracer) as a torchax tensor in the environment."""
    from torchax.tensor import Tensor

    return Tensor(a, torchax_env())
