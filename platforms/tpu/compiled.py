"""The compiled execution strategy: the whole forward as one XLA program per shape bucket.

Every batch is padded to a bucket (chosen by :mod:`anyware_tpu.buckets`) through the core's
padding entry point (``StepProgram.pad``; warm-up compiles on ``StepProgram.dummy``). The program for a bucket is
``step(params, kv, inputs, sampling) -> (logits, tokens, logprobs, kv')``: the model's
parameters and buffers and the KV cache are inputs, the KV cache is donated and returned (the
attention backend's write is a functional scatter inside the program), so nothing is mutated
behind the compiler's back. The program also samples every logit row on the device
(:mod:`anyware_tpu.sampling`): ``run_and_sample`` brings back only the token ids and their
logprobs, ``run`` (the core's fallback for penalties, top logprobs, verify) the logits; both
run the same program, so one compile per bucket serves both.
``setup`` compiles every bucket with a progress bar (``warmup``); the JAX persistent
compilation cache (:func:`anyware_tpu.jaxenv.default_cache_dir`) makes a restart cheap.
``compilations`` counts traces: a steady-state serving loop must not add any.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from anyware.plugin import Bucket as PadBucket
from anyware.plugin import (
    ExecutionStrategy,
    ForwardBatch,
    ForwardMode,
    SamplingTensors,
    StepProgram,
    StepSample,
)
from anyware.plugin.errors import CapabilityError
from anyware_tpu import jaxenv
from anyware_tpu.buckets import Bucket, BucketOptions
from anyware_tpu.sampling import host_params
from anyware_tpu.sampling import sample as device_sample

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _swapped(model: torch.nn.Module | None, tensors: dict[str, torch.Tensor]) -> Iterator[None]:
    """``model``'s parameters and buffers replaced by ``tensors`` (by qualified name)."""
    if model is None:
        yield
        return
    saved = []
    for name, value in tensors.items():
        mod_name, _, attr = name.rpartition(".")
        mod = model.get_submodule(mod_name)
        table = mod._parameters if attr in mod._parameters else mod._buffers
        saved.append((table, attr, table[attr]))
        table[attr] = value
    try:
        yield
    finally:
        for table, attr, value in saved:
            table[attr] = value


class CompiledExecution(ExecutionStrategy):
    kind = "compiled"

    def __init__(self, options: BucketOptions) -> None:
        self.options = options
        self.compilations = 0  # traces of the step function (one per new bucket)
        self.compile_seconds: dict[Bucket, float] = {}

    # ------------------------------------------------------------------ setup
    def setup(self, program: StepProgram) -> None:
        super().setup(program)
        self.options = self.options.for_rows(
            getattr(program, "max_requests", None) or program.attention.spec.max_batch_size)
        jax = jaxenv.jax_module()
        cache = program.kv_cache
        if cache.kv is None:
            raise CapabilityError("compiled execution needs the attention backend's "
                                  "interleaved KV cache layout")
        self.page_size = cache.layout.page_size
        self.model = getattr(program, "model", None)
        named: dict[str, torch.Tensor] = {}
        if self.model is not None:
            named.update(self.model.named_parameters(remove_duplicate=False))
            named.update(self.model.named_buffers(remove_duplicate=False))
        self.names = list(named)
        self._host_kv = list(cache.kv)
        if self.options.tensor_parallel > 1:  # one process, several devices: GSPMD
            from anyware_tpu.mesh import TensorParallelMesh

            self.mesh = TensorParallelMesh(self.options.tensor_parallel)
            self.params = [jax.device_put(jaxenv.to_jax(t), self.mesh.param(n, tuple(t.shape)))
                           for n, t in named.items()]
            kv_sh = [self.mesh.kv(tuple(t.shape)) for t in cache.kv]
            self.kv = [jax.device_put(jaxenv.to_jax(t), s) for t, s in zip(cache.kv, kv_sh)]
            rep = self.mesh.replicated()
            self._step = jax.jit(self._trace, donate_argnums=(1,),
                                 out_shardings=(rep, rep, rep, kv_sh))
        else:
            self.mesh = None
            self.params = [jax.device_put(jaxenv.to_jax(t)) for t in named.values()]
            self.kv = [jax.device_put(jaxenv.to_jax(t)) for t in cache.kv]
            self._step = jax.jit(self._trace, donate_argnums=(1,))
        self._publish()
        if self.options.warmup:
            self.warmup()

    def warmup(self, buckets: list[Bucket] | None = None) -> None:
        """Compile ``buckets`` (default: all) now, with a progress bar."""
        from tqdm.auto import tqdm

        buckets = self.options.all() if buckets is None else buckets
        for bucket in tqdm(buckets, desc="compiling shape buckets", unit="bucket",
                           disable=len(buckets) < 2):
            batch = self.program.dummy(ForwardMode.MIXED,
                                       PadBucket(tokens=bucket.tokens, requests=bucket.requests))
            self._run(bucket, self._inputs(batch, bucket), host_params(None, bucket.logits))

    @staticmethod
    def _inputs(padded: ForwardBatch, bucket: Bucket) -> dict[str, np.ndarray]:
        """A batch the core padded to ``bucket`` as the program's int32 inputs; logit rows
        are padded on to ``bucket.logits`` with row 0 (dropped after the step)."""

        def arr(t: torch.Tensor) -> np.ndarray:
            return t.detach().cpu().numpy().astype(np.int32, copy=False)

        logits = np.zeros(bucket.logits, dtype=np.int32)
        idx = arr(padded.logits_indices)
        logits[: idx.shape[0]] = idx
        names = ("input_ids", "positions", "out_slots", "seq_lens", "prefix_lens",
                 "extend_lens", "extend_start", "page_table")
        return {"logits_indices": logits, **{n: arr(getattr(padded, n)) for n in names}}

    # ------------------------------------------------------------------ the program
    def _trace(self, params: list[Any], kv: list[Any], inputs: dict[str, Any],
               sampling: dict[str, Any]) -> tuple[Any, Any, Any, list[Any]]:
        """Traced once per bucket: the step program in torch, lowered by torchax."""
        self.compilations += 1
        env = jaxenv.torchax_env()
        w = jaxenv.wrap
        cache = self.program.kv_cache
        with env:
            batch = ForwardBatch(
                mode=ForwardMode.MIXED, input_ids=w(inputs["input_ids"]),
                positions=w(inputs["positions"]), seq_lens=w(inputs["seq_lens"]),
                prefix_lens=w(inputs["prefix_lens"]), extend_lens=w(inputs["extend_lens"]),
                extend_start=w(inputs["extend_start"]), page_table=w(inputs["page_table"]),
                out_slots=w(inputs["out_slots"]), logits_indices=w(inputs["logits_indices"]),
                page_size=self.page_size)
            outside = list(cache.kv)
            cache.kv[:] = [w(a) for a in kv]
            try:
                with _swapped(self.model, {n: w(p) for n, p in zip(self.names, params)}):
                    logits = self.program.forward(batch)
                new_kv = [t.jax() for t in cache.kv]
            finally:
                cache.kv[:] = outside
        tokens, logprobs = device_sample(logits.jax(), sampling)
        return logits.jax(), tokens, logprobs, new_kv

    def _run(self, bucket: Bucket, inputs: dict[str, np.ndarray],
             sampling: dict[str, np.ndarray]) -> tuple[Any, Any, Any]:
        """Dispatch the bucket's program; returns ``(logits, tokens, logprobs)`` as device
        arrays (nothing is copied to the host here)."""
        before = self.compilations
        start = time.perf_counter()
        logits, tokens, logprobs, self.kv = self._step(self.params, self.kv, inputs, sampling)
        if self.compilations != before:
            tokens.block_until_ready()
            self.compile_seconds[bucket] = time.perf_counter() - start
            log.debug("compiled bucket %s in %.2f s", bucket, self.compile_seconds[bucket])
        self._publish()
        return logits, tokens, logprobs

    def _publish(self) -> None:
        """``kv_cache.kv`` shows the live state (torchax tensors over the JAX arrays)."""
        self.program.kv_cache.kv[:] = [jaxenv.wrap(a) for a in self.kv]

    # ------------------------------------------------------------------ ExecutionStrategy
    def run(self, batch: ForwardBatch) -> torch.Tensor:
        bucket = self.options.bucket_for(batch)
        padded = self.program.pad(batch, PadBucket(tokens=bucket.tokens, requests=bucket.requests))
        logits, _, _ = self._run(bucket, self._inputs(padded, bucket),
                                 host_params(None, bucket.logits))
        n = int(batch.logits_indices.shape[0])
        return jaxenv.to_torch(logits)[:n]

    def run_and_sample(self, batch: ForwardBatch, sampling: SamplingTensors) -> StepSample:
        """The forward and the draw in one program: only the ids and their logprobs are
        copied out (one row per logit row of ``batch``)."""
        bucket = self.options.bucket_for(batch)
        padded = self.program.pad(batch, PadBucket(tokens=bucket.tokens, requests=bucket.requests))
        _, tokens, logprobs = self._run(bucket, self._inputs(padded, bucket),
                                        host_params(sampling, bucket.logits))
        n = int(batch.logits_indices.shape[0])
        # to the host first, then slice (slicing the device array would compile per n)
        return StepSample(jaxenv.to_torch(tokens, torch.int64)[:n], jaxenv.to_torch(logprobs)[:n])

    def close(self) -> None:
        """Give the host KV tensors back to the cache (with the live values) and drop the
        compiled programs."""
        cache = self.program.kv_cache
        for host, arr in zip(self._host_kv, self.kv):
            host.copy_(jaxenv.to_torch(arr))
        cache.kv[:] = self._host_kv
        self._step = None
        self.kv, self.params = [], []
