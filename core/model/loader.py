"""Building a model on the platform's device and filling its weights: from safetensors
(single file or sharded with an index), or random "dummy" weights of the same shapes."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import torch
from anyware.model.config import ModelConfig, ModelConfigError
from anyware.model.context import ModelContext
from anyware.model.registry import model_class
from anyware.model.weights import CheckpointTensor
from safetensors import safe_open
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

LOAD_FORMATS = ("auto", "safetensors", "dummy")


def _safetensor_files(path: Path) -> list[Path]:
    index = path / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [path / s for s in shards]
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise ModelConfigError(
            f"no *.safetensors weights in {path}; convert the checkpoint to safetensors or use "
            f"--load-format dummy for random weights"
        )
    return files


def iter_weights(path: Path, show_progress: bool = True) -> Iterator[tuple[str, CheckpointTensor]]:
    """Every tensor of the checkpoint, not yet read (:class:`CheckpointTensor`: a rank reads
    only its slice), with a progress bar over tensors (MoE checkpoints hold one per expert and
    projection: tens of thousands, stacked into fused weights as read)."""
    files = _safetensor_files(path)
    names = []
    for f in files:  # headers only: cheap
        with safe_open(str(f), framework="pt") as fh:
            names.append(list(fh.keys()))
    total = sum(len(n) for n in names)
    with tqdm(total=total, desc="Loading weights", unit="tensor", disable=not show_progress) as bar:
        for f, keys in zip(files, names):
            with safe_open(str(f), framework="pt") as fh:
                for name in keys:
                    yield name, CheckpointTensor(fh.get_slice(name))
                    bar.update(1)


@torch.no_grad()
def _dummy_init(model: torch.nn.Module, seed: int) -> None:
    """Random N(0, 0.02) weights drawn on the model's device (norms 1): the real shapes
    without reading files. Reproducible for a given seed and device type."""
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    for name, p in model.named_parameters():
        if name.endswith("norm.weight"):
            p.fill_(1.0)
        else:
            p.normal_(0.0, 0.02, generator=gen)


@torch.no_grad()
def build_model(
    cfg: ModelConfig,
    ctx: ModelContext,
    path: Path | None,
    load_format: str = "auto",
    seed: int = 0,
    show_progress: bool = True,
) -> torch.nn.Module:
    if load_format not in LOAD_FORMATS:
        raise ModelConfigError(f"load format {load_format!r}; choose from {LOAD_FORMATS}")
    cls = model_class(cfg.architecture)
    with torch.device("meta"):
        model = cls(cfg, ctx)
    model = model.to_empty(device=ctx.device)
    from_checkpoint = not (load_format == "dummy" or path is None)
    if not from_checkpoint:
        _dummy_init(model, seed)
    else:
        missing = {n for n, _ in model.named_parameters()}
        for name, tensor in iter_weights(path, show_progress):
            # converted to the parameter's dtype on copy (index tensors, an EAGLE-3 head's
            # d2t, keep theirs)
            loaded = model.load_weight(name, tensor)
            if loaded is not None:
                missing.discard(loaded)
        if missing:
            raise ModelConfigError(f"checkpoint in {path} lacks weights: {sorted(missing)[:8]}")
    if hasattr(model, "finish_loading"):  # e.g. MoE: every expert present, layout padding zeroed
        model.finish_loading(from_checkpoint)
    if ctx.quantization is not None:
        from anyware.model.quant import quantize_linears

        report = quantize_linears(model, ctx.quantization, ctx.ops)
        if report.quantized == 0:
            raise ModelConfigError(
                f"--quantization {ctx.quantization}: no layer of this model can be quantized "
                f"(sizes must be multiples of 16); leave --quantization unset")
        log.info("--quantization %s: %d linear layers, %.2f -> %.2f GiB; %d norm / activation "
                 "ops quantise for their projection", report.method, report.quantized,
                 report.bytes_before / 2**30, report.bytes_after / 2**30, report.fused)
    model.init_rope()
    model.eval()
    return model

