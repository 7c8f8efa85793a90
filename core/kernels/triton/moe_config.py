"""Block sizes for the fused-MoE kernel, per (experts, intermediate size, dtype, device) and
batch-size bucket.

Tables live in ``moe_configs/E={E},N={I},dtype={dtype},device={device}.json`` as
``{"<tokens>": {"BLOCK_M": .., "BLOCK_N": .., "BLOCK_K": .., "GROUP_M": .., "num_warps": ..,
"num_stages": ..}, ...}``; the bucket nearest to the batch's token count is used.
``benchmarks/kernels/tune_moe.py`` writes them on a GPU. Without a table a size heuristic
picks the blocks (see :func:`heuristic_config`). An optional ``"small"`` entry holds the block
sizes of the decode-sized path (:mod:`anyware.kernels.triton.moe_small`).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch

CONFIG_DIR = Path(__file__).parent / "moe_configs"


def device_tag() -> str:
    """The device name as used in table file names (``NVIDIA_H200``), or ``cpu``."""
    if not torch.cuda.is_available():
        return "cpu"
    return torch.cuda.get_device_name().replace(" ", "_").replace("-", "_")


def table_name(num_experts: int, inter: int, dtype: torch.dtype, device: str) -> str:
    return f"E={num_experts},N={inter},dtype={str(dtype).removeprefix('torch.')},device={device}.json"


@functools.cache
def load_table(num_experts: int, inter: int, dtype: torch.dtype, device: str) -> dict[int, dict] | None:
    path = CONFIG_DIR / table_name(num_experts, inter, dtype, device)
    if not path.is_file():
        return None
    raw = json.loads(path.read_text())
    return {int(k): v for k, v in raw.items() if k.isdigit()}


@functools.cache
def load_small(num_experts: int, inter: int, dtype: torch.dtype, device: str) -> dict | None:
    path = CONFIG_DIR / table_name(num_experts, inter, dtype, device)
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("small")


def get_small_config(num_experts: int, inter: int, dtype: torch.dtype,
                     device: str | None = None) -> dict | None:
    """The tuned ``"small"`` entry for the decode-sized path, or ``None`` (its defaults)."""
    small = load_small(num_experts, inter, dtype, device or device_tag())
    return dict(small) if small else None


def heuristic_config(tokens: int, num_experts: int, top_k: int, dtype: torch.dtype) -> dict:
    """Untuned blocks: ``BLOCK_M`` follows the mean rows per expert; wide N/K blocks for the
    weight-bound small batches, squarer ones once the GEMMs are compute-bound."""
    rows_per_expert = max(1, tokens * top_k // max(1, num_experts))
    wide_k = 128 if dtype != torch.float32 else 64
    if rows_per_expert <= 16:
        return {"BLOCK_M": 16, "BLOCK_N": 64, "BLOCK_K": wide_k, "GROUP_M": 1,
                "num_warps": 4, "num_stages": 4}
    if rows_per_expert <= 64:
        return {"BLOCK_M": 32, "BLOCK_N": 64, "BLOCK_K": wide_k, "GROUP_M": 8,
                "num_warps": 4, "num_stages": 4}
    return {"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 64, "GROUP_M": 8,
            "num_warps": 8, "num_stages": 3}


def get_config(tokens: int, num_experts: int, inter: int, top_k: int, dtype: torch.dtype,
               device: str | None = None) -> dict:
    """The tuned config of the nearest batch bucket, else :func:`heuristic_config`."""
    table = load_table(num_experts, inter, dtype, device or device_tag())
    if table:
        bucket = min(table, key=lambda b: abs(b - tokens))
        return dict(table[bucket])
    return heuristic_config(tokens, num_experts, top_k, dtype)
