"""Accumulation of streamed engine deltas into whole choices, and priming of streams."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from anyware.server.streams import unless_disconnected
from starlette.requests import Request


@dataclass
class ChoiceAccumulator:
    """Everything one completion (one choice) has produced so far."""

    text_parts: list[str] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[Any] = field(default_factory=list)
    finish_reason: str | None = None
    stop_reason: str | int | None = None
    spec_verify_ct: int = 0
    spec_accepted_tokens: int = 0

    def add(self, out: Any) -> None:
        """Append a ``CompletionOutput`` delta."""
        if out.spec_verify_ct:  # cumulative counts
            self.spec_verify_ct = out.spec_verify_ct
            self.spec_accepted_tokens = out.spec_accepted_tokens
        if out.text:
            self.text_parts.append(out.text)
        self.token_ids.extend(out.token_ids)
        if out.logprobs:
            self.logprobs.extend(out.logprobs)
        if out.finish_reason is not None:
            self.finish_reason = out.finish_reason
            self.stop_reason = out.stop_reason

    @property
    def text(self) -> str:
        return "".join(self.text_parts)


@dataclass
class UsageCounter:
    """Token counts of one HTTP request (several engine requests for a list of prompts)."""

    prompt_lens: list[int]
    completion: int = 0
    cached: dict[int, int] = field(default_factory=dict)

    def add(self, prompt_index: int, out: Any) -> None:
        self.completion += sum(len(o.token_ids) for o in out.outputs)
        usage = getattr(out, "usage", None)
        if usage is not None:
            self.cached[prompt_index] = int(usage.cached_tokens)

    @property
    def prompt(self) -> int:
        return sum(self.prompt_lens)

    @property
    def cached_tokens(self) -> int:
        return sum(self.cached.values())


_END = object()


async def primed(request: Request, it: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """Wait for the first item of ``it`` before the HTTP answer starts, so that an error the
    engine raises on submission still becomes a proper 4xx; return an iterator over all items.
    A client that disconnects while waiting cancels ``it``."""

    async def step() -> Any:
        try:
            return await it.__anext__()
        except StopAsyncIteration:
            return _END

    first = await unless_disconnected(request, step)

    async def rest() -> AsyncIterator[Any]:
        try:
            if first is _END:
                return
            yield first
            async for item in it:
                yield item
        finally:
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                await aclose()

    return rest()
