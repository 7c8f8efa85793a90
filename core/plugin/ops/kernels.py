"""Elementwise and sampling ops (`KernelOps`) that model layers and the sampler call.

The reference implementation (``anyware.kernels.reference.ReferenceOps``) is the numerics
oracle; a platform subclasses it or implements every method. Each method increments
``self.calls[<method name>]`` so the conformance suite can check the plugin's own kernel ran.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass

import torch


@dataclass
class SamplingTensors:
    """Per-row sampling parameters, all ``[B]`` on the device.

    temperatures: float32, > 0 (greedy rows are handled by ``greedy``).
    top_ks: int32, ``vocab_size`` (or more) disables.
    top_ps: float32 in (0, 1]; 1 disables.
    min_ps: float32 in [0, 1); 0 disables.
    seeds: int64 per-request seed; ``steps``: int64 index of the token being sampled. The
        random draw for a row depends only on (seed, step, token id), never on the batch.
    greedy: bool, rows that take the argmax.
    """

    temperatures: torch.Tensor
    top_ks: torch.Tensor
    top_ps: torch.Tensor
    min_ps: torch.Tensor
    seeds: torch.Tensor
    steps: torch.Tensor
    greedy: torch.Tensor


@dataclass(frozen=True)
class Fp8Rows:
    """Activation rows quantised per token for an fp8 linear layer (2.4).

    data: ``torch.float8_e4m3fn`` ``[T, K]``; scale: fp32 ``[T]``, so that ``data[t].float() *
    scale[t]`` approximates row ``t`` (the quantisation :meth:`KernelOps.fp8_linear` specifies);
    dtype: the model dtype the rows were computed in, which is the dtype of the linear layer's
    output. Made by :meth:`KernelOps.quantize_fp8` and the ``*_fp8`` producers of one ops
    object and consumed by that object's :meth:`KernelOps.fp8_linear`.
    """

    data: torch.Tensor
    scale: torch.Tensor
    dtype: torch.dtype

    @property
    def shape(self) -> torch.Size:
        return self.data.shape


class KernelOps(ABC):
    """Norm, rotary, activation, KV store and sampling kernels.

    Built once per process by ``Platform._create_ops`` after init_device. The methods are
    called by model layers and the sampler on the step path, possibly inside graph capture:
    they may not synchronise with the host or keep state between calls (beyond ``calls``),
    and each increments ``self.calls[<method name>]``. Inputs are on the platform's device;
    outputs are new tensors unless a method says it writes in place.
    """

    provider: str = "abstract"

    #: (2.4) True: :meth:`fp8_linear` also takes :class:`Fp8Rows` made by this object's
    #: :meth:`quantize_fp8`, :meth:`rms_norm_fp8`, :meth:`fused_add_rms_norm_fp8` and
    #: :meth:`silu_and_mul_fp8`, so that a model quantises an fp8 projection's input in the op
    #: that produces it (the norm before the QKV and gate-up projections, SiLU-and-mul before
    #: the down projection) instead of in a launch of its own. A class or instance attribute,
    #: read when the model's layers are quantised. False (the default): those methods are
    #: never called and :meth:`fp8_linear` only ever gets rows in the model dtype.
    fp8_activations: bool = False

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    @abstractmethod
    def rms_norm(self, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        """``x * rsqrt(mean(x^2) + eps) * weight`` over the last dim, computed in fp32,
        returned in ``x.dtype``. x: ``[T, H]``."""

    @abstractmethod
    def fused_add_rms_norm(
        self, x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``r = x + residual`` (in ``x.dtype``); returns ``(rms_norm(r), r)``."""

    @abstractmethod
    def rotary(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        positions: torch.Tensor,
        cos_sin: torch.Tensor,
        is_neox: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotary embedding. q ``[T, Hq, D]``, k ``[T, Hk, D]``, positions int64 ``[T]``,
        cos_sin fp32 ``[max_pos, rot_dim]`` (cos in the first half, sin in the second; the
        first ``rot_dim`` dims rotate). Neox style pairs ``i`` with ``i + rot_dim/2``;
        GPT-J style pairs ``2i`` with ``2i+1``. Returns new ``(q, k)`` in their dtype."""

    def norm_rotary(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        positions: torch.Tensor,
        cos_sin: torch.Tensor,
        is_neox: bool = True,
        q_weight: torch.Tensor | None = None,
        k_weight: torch.Tensor | None = None,
        eps: float = 1e-6,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-head RMSNorm of ``q`` and ``k`` over the head dim (Qwen3's q/k norm; both
        weights ``[D]`` or neither), then :meth:`rotary`; shapes, dtypes and pairing as
        :meth:`rotary`. ``q`` and ``k`` may be strided views (e.g. slices of a fused QKV
        projection's output) whose last dim is contiguous. (2.2)

        The default composes :meth:`rms_norm` and :meth:`rotary` (the normed values are
        rounded to the input dtype in between). A platform may fuse the whole into one launch
        and keep the normed values in fp32 before rotating; it then increments
        ``self.calls["norm_rotary"]``."""
        if (q_weight is None) != (k_weight is None):
            raise ValueError("norm_rotary takes both q_weight and k_weight, or neither")
        if q_weight is not None:
            q = self.rms_norm(q.reshape(-1, q.shape[-1]), q_weight, eps).view(q.shape)
            k = self.rms_norm(k.reshape(-1, k.shape[-1]), k_weight, eps).view(k.shape)
        return self.rotary(q, k, positions, cos_sin, is_neox)

    @abstractmethod
    def silu_and_mul(self, x: torch.Tensor) -> torch.Tensor:
        """x ``[T, 2I]`` -> ``silu(x[:, :I]) * x[:, I:]`` ``[T, I]``."""

    @abstractmethod
    def store_kv(
        self,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        slots: torch.Tensor,
    ) -> None:
        """``k_cache[slots] = k``; ``v_cache[slots] = v`` (cast to the cache dtype)."""

    @abstractmethod
    def sample(self, logits: torch.Tensor, params: SamplingTensors) -> torch.Tensor:
        """Sample one token per row of fp32 ``logits`` ``[B, V]`` (penalties already applied).

        Greedy rows: argmax (lowest index on ties). Other rows: divide by temperature,
        softmax, keep the ``top_k`` most likely tokens, then the smallest set whose
        probability reaches ``top_p`` (the token that crosses ``top_p`` is kept), then tokens
        with ``p >= min_p * max(p)``; renormalise and draw with the counter-based noise of
        ``anyware.kernels.reference.sampling_noise`` (so a seeded request is reproducible on
        any platform and in any batch). Returns int64 ``[B]``.
        """

    def fp8_linear(
        self,
        x: torch.Tensor,
        weight: torch.Tensor,
        weight_scale: torch.Tensor,
        bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """W8A8 FP8 linear layer (``--quantization fp8``; claimed by listing ``"fp8"`` in
        ``Capabilities.quantization``, never called otherwise). (2.2)

        x: ``[T, K]`` in the model dtype, or (2.4, only where :attr:`fp8_activations`) an
        :class:`Fp8Rows` of ``[T, K]`` made by this object, which is used as it is (no second
        quantisation; the output is in ``x.dtype``). weight: ``torch.float8_e4m3fn`` ``[N, K]`` (row
        major), quantised per output channel; weight_scale: fp32 ``[N]``, so that
        ``weight[n].float() * weight_scale[n]`` approximates the original row. bias: ``[N]`` in
        ``x.dtype`` or ``None``. ``N`` and ``K`` are multiples of 16 (the model keeps other
        layers in its dtype).

        Quantises ``x`` per token (row), dynamically: ``s[t] = max(amax(|x[t]|), 1e-12) /
        448`` computed in fp32, ``x_q[t] = e4m3(clamp(x[t] / s[t], -448, 448))`` (round to
        nearest even, as torch's cast does). Returns ``(x_q.float() @ weight.float().T) *
        s[:, None] * weight_scale[None, :] (+ bias)``, accumulated in fp32, in ``x.dtype``,
        ``[T, N]``. The reference is ``anyware.kernels.reference.quant.fp8_linear``.

        The base class implements nothing: a platform that declares ``"fp8"`` overrides it.
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not implement fp8_linear; its platform must not "
            f"declare 'fp8' in Capabilities.quantization")

    def quantize_fp8(self, x: torch.Tensor) -> Fp8Rows:
        """(2.4; called only where :attr:`fp8_activations`) ``x`` ``[T, K]`` in the model dtype
        -> :class:`Fp8Rows`: exactly the per-token quantisation :meth:`fp8_linear` specifies
        (``s[t] = max(amax(|x[t]|), 1e-12) / 448`` in fp32; ``e4m3(clamp(x[t] / s[t], ±448))``,
        rounded to nearest even), ``dtype = x.dtype``.

        The base class implements nothing: a platform that sets :attr:`fp8_activations`
        overrides it (the reference is ``anyware.kernels.reference.quant.quantize_fp8_rows``).
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not implement quantize_fp8; it must not set "
            f"fp8_activations")

    def rms_norm_fp8(self, x: torch.Tensor, weight: torch.Tensor, eps: float) -> Fp8Rows:
        """(2.4) ``quantize_fp8(rms_norm(x, weight, eps))``: the normed rows are rounded to
        ``x.dtype``, then quantised, so a fused kernel gives the bytes of the two ops in
        sequence (up to the norm's own rounding). The default composes the two; a platform
        that fuses them increments ``self.calls["rms_norm_fp8"]``."""
        return self.quantize_fp8(self.rms_norm(x, weight, eps))

    def fused_add_rms_norm_fp8(
        self, x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
    ) -> tuple[Fp8Rows, torch.Tensor]:
        """(2.4) :meth:`fused_add_rms_norm` whose normed rows are quantised as
        :meth:`rms_norm_fp8` says: returns ``(quantize_fp8(rms_norm(r)), r)``, ``r = x +
        residual`` in ``x.dtype``. The default composes; a fused kernel increments
        ``self.calls["fused_add_rms_norm_fp8"]``."""
        normed, r = self.fused_add_rms_norm(x, residual, weight, eps)
        return self.quantize_fp8(normed), r

    def silu_and_mul_fp8(self, x: torch.Tensor) -> Fp8Rows:
        """(2.4) ``quantize_fp8(silu_and_mul(x))``: the product rounded to ``x.dtype``, then
        quantised. The default composes; a fused kernel increments
        ``self.calls["silu_and_mul_fp8"]``."""
        return self.quantize_fp8(self.silu_and_mul(x))
