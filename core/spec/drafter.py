"""`Drafter`: where the draft tokens of speculative decoding come from.

The engine calls a drafter from its loop thread only, in this order each step:

1. ``prepare(items)`` once, before the scheduler picks the step, with every running request
   that may verify this step (in decode, all of its tokens known, no verify of its own in
   flight) and the most draft tokens it may get (``DraftItem.max_tokens`` >= 1: the
   engine's ``k`` capped by what the request's length limits leave room for). A drafter that
   runs a model does its batched work here; one that needs no device work leaves it empty.
2. ``propose(request, max_tokens)`` from the scheduler, per request it is about to schedule
   for decode, which may be a request ``prepare`` did not list (it then returns ``[]`` or
   drafts on the spot). Returns **at most** ``max_tokens`` token ids that the drafter expects
   to follow ``request``'s tokens (``prompt_ids + output_ids``, all known: no placeholders);
   an empty list means a plain one-token decode. Proposals never change the output: the
   target verifies them (``anyware.sampling``), so a wrong draft costs only time.
   A drafter may instead return a :class:`~anyware.request.DraftTree` of at most
   ``max_tokens`` nodes (tree drafts): a greedy request verifies the whole tree in one step
   (the engine asked for ``AttentionFeatures.tree_mask``), a sampling request — or any
   request in a step with prefill chunks — verifies its chain of first children
   (``DraftTree.chain``). ``num_drafted`` below counts the drafts verified (nodes of a
   tree), ``num_accepted`` the accepted path's length.
3. ``on_accept(request, num_drafted, num_accepted)`` after a verify step of ``request`` has
   been processed: of the ``num_drafted`` drafts it verified, the first ``num_accepted``
   were kept (plus one token of the target's own). The request's tokens then already include
   them; a draft token past ``num_accepted`` was rejected and its KV released.
4. ``release(request)`` when ``request`` has finished or was aborted: drop its state. A
   request may also be retracted (its KV released and recomputed later, ``Request.retractions``
   goes up) or disappear without ``release`` (an abort while it waited): a drafter keeps
   per-request state so that both stay correct (weak references, or a check of
   ``retractions``).

``close()`` is called once at engine shutdown. A drafter holds no global state; it may read
a request's fields but writes none of them (the ``KVManager`` is the only writer of its KV
fields).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from anyware.request import DraftTree, Request


@dataclass(frozen=True)
class DraftItem:
    """A request that may verify this step, and the most draft tokens it may get."""

    request: Request
    max_tokens: int


class Drafter(ABC):
    """Proposes draft tokens per request; see the module docstring for the protocol."""

    #: the ``--speculative-algorithm`` name
    name: str = ""

    def prepare(self, items: Sequence[DraftItem]) -> None:  # noqa: B027 (optional hook)
        """Batched work for this step's proposals (default: none)."""

    @abstractmethod
    def propose(self, request: Request, max_tokens: int) -> list[int] | DraftTree:
        """Up to ``max_tokens`` draft tokens (or tree nodes) to follow ``request``'s
        tokens."""

    def on_accept(self, request: Request, num_drafted: int,  # noqa: B027 (optional hook)
                  num_accepted: int) -> None:
        """``num_accepted`` of the ``num_drafted`` drafts of ``request``'s verify were kept."""

    def release(self, request: Request) -> None:  # noqa: B027 (optional hook)
        """``request`` finished or was aborted: forget it."""

    def close(self) -> None:  # noqa: B027 (optional hook)
        """The engine shuts down."""
