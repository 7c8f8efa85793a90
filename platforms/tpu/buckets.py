"""Shape buckets of the compiled strategy: which padded shape a batch runs in.

A bucket is ``(tokens T, requests B, logit rows L)``; the page-table width ``P`` is fixed per
program (the full per-request width). ``T`` and ``B`` are powers of two, ``B <= T``, and
``L`` is ``B`` (one logit row per request) or ``T`` (VERIFY, prompt logprobs: many rows).
The padding itself is the core's (``StepProgram.pad`` / ``dummy``,
:mod:`anyware.plugin.padding`): padding requests carry one token each on the scratch page,
so a batch of ``t`` tokens and ``b`` requests needs ``T >= t + (B - b)``. Logit rows past the
padded batch's own read row 0 and are dropped afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from anyware.plugin import ForwardBatch, PlatformConfig
from anyware.plugin.errors import CapabilityError

OPTION_KEYS = ("tpu_warmup", "tpu_min_token_bucket", "tpu_tp")


def _pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


@dataclass(frozen=True)
class Bucket:
    tokens: int
    requests: int
    logits: int


@dataclass(frozen=True)
class BucketOptions:
    """max_tokens / max_requests: the largest bucket (powers of two); min_tokens: the
    smallest token bucket; warmup: compile every bucket in ``setup`` (else on first use);
    tensor_parallel: local devices the step is partitioned over (:mod:`anyware_tpu.mesh`)."""

    max_tokens: int = 256
    max_requests: int = 16
    min_tokens: int = 8
    warmup: bool = True
    tensor_parallel: int = 1

    @classmethod
    def from_extra(cls, extra: dict[str, Any]) -> dict[str, Any]:
        unknown = [k for k in extra if k.startswith("tpu_") and k not in OPTION_KEYS]
        if unknown:
            raise CapabilityError(f"unknown tpu platform options {unknown} (known: {OPTION_KEYS})")
        out: dict[str, Any] = {}
        if "tpu_warmup" in extra:
            out["warmup"] = str(extra["tpu_warmup"]).lower() not in ("0", "false", "no", "off")
        if "tpu_min_token_bucket" in extra:
            value = int(extra["tpu_min_token_bucket"])
            if value < 1:
                raise CapabilityError("tpu_min_token_bucket must be >= 1")
            out["min_tokens"] = value
        if "tpu_tp" in extra:
            value = int(extra["tpu_tp"])
            if value < 1:
                raise CapabilityError("tpu_tp must be >= 1 (local devices to split the model over)")
            out["tensor_parallel"] = value
        return out

    @classmethod
    def from_config(cls, config: PlatformConfig) -> BucketOptions:
        """Buckets up to ``max_batch_size`` requests and ``max_prefill_tokens +
        max_batch_size`` tokens (a mixed step carries a prefill chunk and the decodes)."""
        requests = _pow2(config.max_batch_size)
        return cls(max_tokens=_pow2(config.max_prefill_tokens + requests),
                   max_requests=requests, **cls.from_extra(config.extra))

    def for_rows(self, rows: int) -> BucketOptions:
        """These options with no request bucket above ``rows`` (rounded up to a power of
        two): a program's ``max_requests``, which can be below ``max_batch_size`` when the
        core sizes the running-request cap from the KV pool."""
        requests = _pow2(rows)
        return replace(self, max_requests=requests) if requests < self.max_requests else self

    def token_buckets(self) -> list[int]:
        out, t = [], _pow2(self.min_tokens)
        while t < self.max_tokens:
            out.append(t)
            t *= 2
        return [*out, max(self.max_tokens, _pow2(self.min_tokens))]

    def request_buckets(self) -> list[int]:
        out, b = [], 1
        while b < self.max_requests:
            out.append(b)
            b *= 2
        return [*out, self.max_requests]

    def all(self) -> list[Bucket]:
        """What warm-up compiles: every (T, B) with ``B <= T`` and ``L = B``."""
        return [Bucket(t, b, b) for t in self.token_buckets() for b in self.request_buckets()
                if b <= t]

    def bucket_for(self, batch: ForwardBatch) -> Bucket:
        t, b, n_logits = batch.num_tokens, batch.batch_size, int(batch.logits_indices.shape[0])
        fits_b = [x for x in self.request_buckets() if x >= b]
        # the core's padding gives each padding request one token
        fits_t = [x for x in self.token_buckets() if fits_b and x >= t + fits_b[0] - b]
        if not fits_t or not fits_b:
            raise CapabilityError(
                f"a batch of {t} tokens / {b} requests exceeds the largest compiled bucket "
                f"({self.max_tokens} tokens, {self.max_requests} requests); raise "
                "max_batch_size / max_prefill_tokens in the engine config")
        tb, bb = fits_t[0], fits_b[0]
        n_logits += bb - b  # a logit row per padding request
        if n_logits > tb:
            raise CapabilityError(f"{n_logits} logit rows exceed the token bucket {tb}")
        return Bucket(tb, bb, bb if n_logits <= bb else tb)
