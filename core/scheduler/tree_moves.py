"""Where the KV of a tree verify's accepted path goes.

A tree verify of a request with ``pre`` computed positions writes the root's KV at position
``pre`` and node ``i``'s at position ``pre + 1 + i`` (the slots the step's plan assigned, in
node order). The accepted path — nodes ``n_1, .., n_a`` at depths ``1 .. a`` — must end up at
positions ``pre + 1 .. pre + a``, where a plain decode would have written it; the positions
past them are then released by ``KVManager.truncate``.
"""

from __future__ import annotations

from anyware.request import DraftTree, Request


def path_moves(req: Request, pre: int, tree: DraftTree, accepted: list[int],
               page_size: int) -> list[tuple[int, int]]:
    """``(source slot, destination slot)`` for each accepted node not already in place, in
    depth order; ``accepted``: the accepted draft tokens (the path's tokens from the root).
    Call before ``truncate`` releases the slots. Every source lies at or after its
    destination and after every earlier destination, so applying the copies in one gather
    then one scatter (or in order) reads no slot an earlier copy wrote."""
    pages = req.pages

    def slot(pos: int) -> int:
        return pages[pos // page_size] * page_size + pos % page_size

    moves = []
    for depth, node in enumerate(tree.path(accepted), start=1):
        if node != depth - 1:
            moves.append((slot(pre + 1 + node), slot(pre + depth)))
    return moves
