"""Load-time quantisation of a model's linear layers (``--quantization``).

``fp8`` (W8A8, e4m3): after the weights are loaded (or drawn at random), every projection of
an attention or MLP block — the :class:`~anyware.model.layers.Linear` modules named
``qkv_proj``, ``o_proj``, ``gate_up_proj`` and ``down_proj`` — has its weight quantised per
output channel (``anyware.kernels.reference.quantize_fp8_rows``), one layer at a time, and from
then on runs through the platform's ``KernelOps.fp8_linear``, which quantises the activations
per token. MoE experts are quantised by their own layer (:mod:`anyware.model.moe`, through
the MoE backend). Embeddings, the LM head, MoE router gates, EAGLE-3's ``fc`` and norms stay in
the model dtype (as vLLM's FP8 method does for the head and the router). A layer whose output
or input size is not a multiple of 16 (the GEMM alignment the contract guarantees) stays in
the model dtype too.

Where the platform's ops quantise activations in the op that produces them
(``KernelOps.fp8_activations``), each module that names ``fp8_producers()`` — (producer,
projection) pairs whose producer output feeds only that projection: a decoder layer's norms,
an MLP's SiLU-and-mul — has the producer's ``fp8_out`` set when the projection was quantised,
so the norm or activation hands the projection :class:`~anyware.plugin.Fp8Rows` and the
projection skips its own quantisation launch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from anyware.kernels.reference.quant import FP8_ALIGN
from anyware.model.layers import Linear
from anyware.plugin import KernelOps

log = logging.getLogger(__name__)

QUANTIZED_PROJECTIONS = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")


@dataclass(frozen=True)
class QuantizationReport:
    """What :func:`quantize_linears` did: layers quantised, layers kept (misaligned), the
    weight bytes before and after, and the norms / activations that now quantise for their
    projection (``fused``)."""

    method: str
    quantized: int
    kept: tuple[str, ...]
    bytes_before: int
    bytes_after: int
    fused: int = 0


@torch.no_grad()
def quantize_linears(model: torch.nn.Module, method: str, ops: KernelOps) -> QuantizationReport:
    """Quantise ``model``'s projections in place with ``method`` (``"fp8"``) and route them
    through ``ops``. Raises ``ValueError`` for an unknown method."""
    if method != "fp8":
        raise ValueError(f"quantization {method!r}; known: fp8")
    quantized, kept, before, after = 0, [], 0, 0
    for name, module in model.named_modules():
        if not isinstance(module, Linear) or name.rsplit(".", 1)[-1] not in QUANTIZED_PROJECTIONS:
            continue
        n, k = module.weight.shape
        if n % FP8_ALIGN or k % FP8_ALIGN:
            kept.append(name)
            continue
        before += module.weight.numel() * module.weight.element_size()
        module.quantize_fp8(ops)
        after += module.weight.numel() + module.weight_scale.numel() * 4
        quantized += 1
    fused = _fuse_producers(model) if quantized and ops.fp8_activations else 0
    if kept:
        log.warning("--quantization fp8: %d layer(s) stay in the model dtype (a size not a "
                    "multiple of %d): %s", len(kept), FP8_ALIGN, ", ".join(kept[:4]))
    return QuantizationReport(method, quantized, tuple(kept), before, after, fused)


def _fuse_producers(model: torch.nn.Module) -> int:
    """Set ``fp8_out`` on every producer whose projection is quantised; how many."""
    count = 0
    for module in model.modules():
        pairs = getattr(module, "fp8_producers", None)
        for producer, projection in pairs() if callable(pairs) else ():
            if projection.weight_scale is not None:
                producer.fp8_out = True
                count += 1
    return count
