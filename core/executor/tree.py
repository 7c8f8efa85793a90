"""The VERIFY inputs of tree drafts: per-token positions (prefix + depth) and the
``SpecInfo.tree_mask`` of the batch."""

from __future__ import annotations

import torch
from anyware.request import DraftTree


def tree_inputs(parents: list[list[int]], prefix_lens: list[int], extend_lens: list[int],
                width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``positions`` int64 ``[T]`` and ``tree_mask`` bool ``[B, width, width]`` of a VERIFY
    batch whose request ``i`` carries ``extend_lens[i]`` new tokens: the root and the nodes
    of the tree with ``parents[i]`` (a chain row: ``parents[i]`` empty, causal). A node sits
    at ``prefix + depth`` and sees itself and its ancestors; the rows and columns past a
    request's tokens are causal (unused)."""
    positions: list[int] = []
    mask = torch.ones((width, width), dtype=torch.bool).tril().repeat(len(parents), 1, 1)
    for i, (par, pre, ext) in enumerate(zip(parents, prefix_lens, extend_lens)):
        if not par:
            positions.extend(range(pre, pre + ext))
            continue
        tree = _tree(par)
        positions.append(pre)
        positions.extend(pre + d for d in tree.depths())
        n = len(par) + 1
        mask[i, :n, :n] = torch.tensor(tree.mask(), dtype=torch.bool)
    pos = torch.tensor(positions, dtype=torch.int64).to(device, non_blocking=True)
    return pos, mask.to(device, non_blocking=True)


def _tree(parents: list[int]) -> DraftTree:
    # the shape alone (distinct placeholder tokens: siblings must differ)
    return DraftTree(tuple(range(len(parents))), tuple(parents))
