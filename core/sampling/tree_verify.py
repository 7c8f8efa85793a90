"""Greedy tree verification on the device: which root path of a verify row's draft tree the
target agrees with, and the row order that puts that path first."""

from __future__ import annotations

import torch
from anyware.request import DraftTree


def accept_tree(tokens: torch.Tensor, starts: list[int],
                trees: list[DraftTree]) -> tuple[torch.Tensor, torch.Tensor]:
    """``tokens``: the target's token at every logit row (int64 ``[L]``); tree ``r``'s verify
    row owns the ``1 + len(trees[r])`` rows from ``starts[r]`` (the root's row, then node
    ``i`` at ``starts[r] + 1 + i``).

    Greedy acceptance: from the root, move to the child whose draft token equals the
    target's token at the current node, while there is one; the nodes walked are accepted.
    Since siblings carry distinct tokens, those are exactly the nodes whose every ancestor
    (and itself) carries the target's token at its parent — computed for all nodes at once.

    Returns ``counts`` int64 ``[R]`` (``1 +`` accepted nodes) and ``order`` int64 ``[L]``, a
    permutation of the rows: within each tree's rows, the root, the accepted nodes by depth,
    then the others, so that ``tokens[order]`` starts each row with the kept tokens (the
    target's tokens at the root and at each accepted node: the accepted drafts plus one).
    Rows outside the trees keep their place. No host sync."""
    device = tokens.device
    num_rows = int(tokens.shape[0])
    if not trees:
        return (torch.zeros(0, dtype=torch.int64, device=device),
                torch.arange(num_rows, device=device))
    k = max(len(t) for t in trees)
    parent_row, want, valid, depth, anc, base, rows, sel = [], [], [], [], [], [], [], []
    for r, (start, tree) in enumerate(zip(starts, trees)):
        n, pad = len(tree), k - len(tree)
        parent_row += [start + 1 + p if p >= 0 else start for p in tree.parents] + [start] * pad
        want += list(tree.tokens) + [-1] * pad
        valid += [1] * n + [0] * pad
        depth += tree.depths() + [0] * pad
        mask = tree.mask()  # [n + 1, n + 1], row/column 0 the root
        for i in range(k):
            anc += ([int(mask[i + 1][j + 1]) for j in range(n)] + [0] * pad if i < n
                    else [0] * k)
        base += [start] * k
        rows += range(start + 1, start + 1 + n)  # the node rows, reordered below
        sel += range(r * k, r * k + n)
    r = len(trees)
    packed = torch.tensor(parent_row + want + valid + depth + base + anc + rows + sel,
                          dtype=torch.int64).to(device, non_blocking=True)
    sizes = [r * k] * 5 + [r * k * k, len(rows), len(sel)]
    parent_t, want_t, valid_t, depth_t, base_t, anc_t, rows_t, sel_t = packed.split(sizes)
    valid_b = valid_t.view(r, k).bool()
    ok = ((tokens[parent_t] == want_t).view(r, k)) & valid_b
    on_path = (~anc_t.view(r, k, k).bool() | ok[:, None, :]).all(dim=-1) & valid_b  # [R, k]
    counts = 1 + on_path.sum(dim=1)
    # accepted nodes first, by depth; then the rest in node order (padding last)
    node = torch.arange(k, device=device)[None, :]
    key = torch.where(on_path, depth_t.view(r, k), k + 1 + node)
    src = base_t.view(r, k) + 1 + key.argsort(dim=1, stable=True)  # [R, k]
    order = torch.arange(num_rows, device=device)
    order[rows_t] = src.reshape(-1)[sel_t]
    return counts, order
