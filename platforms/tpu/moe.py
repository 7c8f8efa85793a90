"""The tpu platform's `MoEBackend`: routing, a sort dispatcher, grouped expert matmuls and a
weighted combine as JAX functions, graph-safe (static shapes, no host reads).

Inside the compiled step (torchax tensors) each stage runs on the traced JAX arrays, so the
whole layer is part of the step's XLA program; on host tensors (the conformance suite, eager
debugging) each stage is a jitted call per shape. Expert compute is a *sorted grouped
matmul*: rows sorted by expert, ``lax.ragged_dot`` with the per-expert row counts as group
sizes (the XLA grouped GEMM; every backend runs it). On a TPU the same call goes to the Pallas
``megablox`` ``gmm`` kernel (rows padded to its 128-row tile; expert weights laid out with
the intermediate size padded to 128, see :meth:`JaxMoEBackend.weight_layout`). The megablox
path is written against jax's API and has **not been run on a TPU**; CI runs ``ragged_dot``
on JAX's CPU backend.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from anyware.plugin import Dispatched, MoEBackend, MoEWeightLayout
from anyware_tpu import jaxenv

TPU_TILE = 128


# ---------------------------------------------------------------------- JAX stage functions
def route(logits, *, top_k: int, renormalize: bool, scoring: str, scale: float):
    jax = jaxenv.jax_module()
    jnp = jax.numpy
    x = logits.astype(jnp.float32)
    scores = jax.nn.softmax(x, axis=-1) if scoring == "softmax" else jax.nn.sigmoid(x)
    weights, ids = jax.lax.top_k(scores, top_k)
    if renormalize:
        weights = weights / weights.sum(-1, keepdims=True)
    if scale != 1.0:
        weights = weights * scale
    return weights, ids.astype(jnp.int32)


def dispatch(hidden, weights, ids, *, num_experts: int):
    """Rows sorted by expert (stable). Returns ``(rows, counts i32 [E], row weights f32,
    token_of, inverse)``."""
    jnp = jaxenv.jax_module().numpy
    k = ids.shape[1]
    flat = ids.reshape(-1)
    order = jnp.argsort(flat, stable=True)
    inverse = jnp.zeros_like(order).at[order].set(jnp.arange(order.shape[0], dtype=order.dtype))
    token_of = order // k
    counts = jnp.zeros((num_experts,), jnp.int32).at[flat].add(1)
    return hidden[token_of], counts, weights.reshape(-1)[order].astype(jnp.float32), token_of, inverse


def grouped_matmul(x, w, counts):
    """``x [M, K]`` rows sorted by group, ``w [G, N, K]`` -> ``[M, N]`` fp32: each row times
    its group's ``w[g].T``. Pallas megablox ``gmm`` on a TPU, ``lax.ragged_dot`` elsewhere."""
    jax = jaxenv.jax_module()
    jnp = jax.numpy
    if jaxenv.backend() == "tpu":  # pragma: no cover - needs a TPU (not run)
        from jax.experimental.pallas.ops.tpu.megablox import gmm

        m = x.shape[0]
        m_pad = -(-m // TPU_TILE) * TPU_TILE
        lhs = jnp.pad(x, ((0, m_pad - m), (0, 0)))
        out = gmm(lhs, w, counts, preferred_element_type=jnp.float32,
                  tiling=(TPU_TILE, TPU_TILE, TPU_TILE), transpose_rhs=True)
        return out[:m]
    return jax.lax.ragged_dot(x.astype(jnp.float32), jnp.swapaxes(w, 1, 2).astype(jnp.float32),
                              counts, preferred_element_type=jnp.float32)


def experts(rows, counts, w13, w2):
    """The gated MLP of each sorted row's expert (unweighted), in ``rows.dtype``."""
    jax = jaxenv.jax_module()
    inter = w13.shape[1] // 2
    gate_up = grouped_matmul(rows, w13, counts)
    h = jax.nn.silu(gate_up[:, :inter]) * gate_up[:, inter:]
    return grouped_matmul(h, w2, counts).astype(rows.dtype)


def combine(expert_out, row_weights, inverse, *, t: int, k: int):
    jnp = jaxenv.jax_module().numpy
    rows = expert_out[inverse].astype(jnp.float32).reshape(t, k, -1)
    w = row_weights[inverse].reshape(t, k, 1)
    return (rows * w).sum(1).astype(expert_out.dtype)


def moe_forward(hidden, logits, w13, w2, *, top_k: int, renormalize: bool, scoring: str,
                scale: float, num_experts: int):
    weights, ids = route(logits, top_k=top_k, renormalize=renormalize, scoring=scoring,
                         scale=scale)
    rows, counts, row_w, _, inverse = dispatch(hidden, weights, ids, num_experts=num_experts)
    out = experts(rows, counts, w13, w2)
    return combine(out, row_w, inverse, t=ids.shape[0], k=top_k)


@functools.cache
def _jitted(fn, **statics):
    return jaxenv.jax_module().jit(functools.partial(fn, **statics))


# ---------------------------------------------------------------------- the backend
class JaxMoEBackend(MoEBackend):
    """Single rank (the in-process ``tpu_tp`` mesh shards expert weights under GSPMD)."""

    name = "jax-sorted-gmm"
    priority = 10
    dtypes = frozenset({torch.float32, torch.bfloat16})

    def weight_layout(self) -> MoEWeightLayout:
        """Dense on JAX's CPU backend; the intermediate size padded to the megablox tile
        (128) on a TPU."""
        return MoEWeightLayout(TPU_TILE if jaxenv.backend() == "tpu" else 1)

    def _route_statics(self) -> dict[str, Any]:
        s = self.spec
        return {"top_k": s.top_k, "renormalize": s.renormalize, "scoring": s.scoring,
                "scale": float(s.routed_scaling_factor)}

    @staticmethod
    def _call(fn, *args: torch.Tensor, **statics) -> tuple[Any, bool]:
        """``fn`` on the JAX arrays of ``args``: traced inline inside the compiled step
        (returns ``(out, True)``), else jitted per shape on host tensors."""
        traced = jaxenv.is_torchax(args[0])
        arrays = [jaxenv.to_jax(a) for a in args]
        if traced:
            return fn(*arrays, **statics), True
        return _jitted(fn, **statics)(*arrays), False

    @staticmethod
    def _out(a: Any, traced: bool, dtype: torch.dtype | None = None) -> torch.Tensor:
        if traced:
            return jaxenv.wrap(a)
        return jaxenv.to_torch(a, dtype)

    def route(self, router_logits):
        self.calls["route"] += 1
        (w, ids), traced = self._call(route, router_logits, **self._route_statics())
        return self._out(w, traced), self._out(ids, traced, torch.int32)

    def dispatch(self, hidden, topk_weights, topk_ids) -> Dispatched:
        self.calls["dispatch"] += 1
        (rows, counts, row_w, token_of, inverse), traced = self._call(
            dispatch, hidden, topk_weights, topk_ids, num_experts=self.spec.num_local_experts)
        t, k = topk_ids.shape
        return Dispatched(hidden=self._out(rows, traced, hidden.dtype),
                          expert_counts=self._out(counts, traced, torch.int64),
                          weights=self._out(row_w, traced),
                          handle=(counts, row_w, token_of, inverse, int(t), int(k)))

    def experts(self, dispatched, w13, w2):
        self.calls["experts"] += 1
        counts = dispatched.handle[0]
        traced = jaxenv.is_torchax(dispatched.hidden)
        rows, a, b = (jaxenv.to_jax(x) for x in (dispatched.hidden, w13, w2))
        out = experts(rows, counts, a, b) if traced else _jitted(experts)(rows, counts, a, b)
        return self._out(out, traced, dispatched.hidden.dtype)

    def combine(self, expert_out, dispatched):
        self.calls["combine"] += 1
        _, row_w, _, inverse, t, k = dispatched.handle
        traced = jaxenv.is_torchax(expert_out)
        x = jaxenv.to_jax(expert_out)
        out = (combine(x, row_w, inverse, t=t, k=k) if traced
               else _jitted(combine, t=t, k=k)(x, row_w, inverse))
        return self._out(out, traced, expert_out.dtype)

    def forward(self, hidden, router_logits, w13, w2):
        """The whole layer as one JAX function (one program on host tensors)."""
        self.calls["forward"] += 1
        out, traced = self._call(moe_forward, hidden, router_logits, w13, w2,
                                 num_experts=self.spec.num_local_experts, **self._route_statics())
        return self._out(out, traced, hidden.dtype)
