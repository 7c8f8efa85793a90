"""`Request`: the core's per-request state (tokens, KV pages, progress)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from anyware.request.delta import TokenDelta
from anyware.request.params import SamplingParams


def placeholder(row: int) -> int:
    """The stand-in token id for the token that the request in page-table row ``row`` is
    sampling in a step still in flight (resolved on the device by
    :class:`anyware.executor.future.FutureTokens`; replaced on the host once it arrives)."""
    return -(row + 1)


@dataclass(eq=False)
class Request:
    """One sequence being generated (``n > 1`` becomes ``n`` of these).

    KV state (``row``, ``pages``, ``num_computed``, ``cache_node``, ``num_cache_pages``,
    ``num_unverified``) is owned by :class:`anyware.scheduler.kv_manager.KVManager`: only it
    writes these fields; everyone else reads them. ``pages[i]`` holds positions
    ``i*page_size ..``; ``num_computed`` positions have KV in those pages (or have it queued
    by a launched step). The first ``num_cache_pages`` pages are shared with the prefix cache
    (locked through ``cache_node``), the rest are owned by the request. The last
    ``num_unverified`` computed positions hold the KV of draft tokens a verify step has not
    judged yet: they are never cached, and ``KVManager.truncate`` drops the rejected ones.

    ``awaiting`` is set while a step whose number of accepted tokens is not known yet (a
    verify) is in flight: the request's next position is unknown, so it is not scheduled
    until that step is processed.

    ``prompt_lp_next``: with ``params.prompt_logprobs``, the first prompt position whose
    logprob (of the prompt token after it) has not been computed by a launched step yet;
    positions ``< len(prompt_ids) - 1`` have one. Advanced by the scheduler at launch. Set it
    to ``len(prompt_ids)`` to ask for none (the ``n > 1`` siblings of the first child).
    """

    rid: str
    prompt_ids: list[int]
    params: SamplingParams
    seed: int
    sink: Callable[[TokenDelta], None]
    arrival: float = field(default_factory=time.monotonic)
    output_ids: list[int] = field(default_factory=list)
    pages: list[int] = field(default_factory=list)
    num_computed: int = 0
    cache_node: Any = None
    num_cache_pages: int = 0
    num_unverified: int = 0
    cached_tokens: int = 0
    row: int | None = None
    finish_reason: str | None = None
    stop_reason: str | int | None = None
    retractions: int = 0
    is_running: bool = False  # maintained by the scheduler (O(1) membership)
    awaiting: bool = False  # maintained by the scheduler (a verify step in flight)
    prompt_lp_next: int = 0  # maintained by the scheduler (prompt logprobs launched so far)
    spec_verify_ct: int = 0  # maintained by the scheduler (verify steps of this request)
    spec_accepted_tokens: int = 0  # maintained by the scheduler (drafts its verifies kept)

    @property
    def seq_len(self) -> int:
        return len(self.prompt_ids) + len(self.output_ids)

    @property
    def all_ids(self) -> list[int]:
        return self.prompt_ids + self.output_ids

    def tokens(self, start: int, end: int) -> list[int]:
        """``all_ids[start:end]`` without concatenating prompt and output."""
        n = len(self.prompt_ids)
        if start >= n:
            return self.output_ids[start - n : end - n]
        if end <= n:
            return self.prompt_ids[start:end]
        return self.prompt_ids[start:] + self.output_ids[: end - n]

    @property
    def prompt_lp_pending(self) -> bool:
        """Whether prompt logprobs are asked for and some are still to be computed."""
        return (self.params.prompt_logprobs is not None
                and self.prompt_lp_next < len(self.prompt_ids) - 1)

    @property
    def in_prefill(self) -> bool:
        """True while more than the last token still needs its KV computed."""
        return self.num_computed < len(self.prompt_ids) + len(self.output_ids) - 1

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None
