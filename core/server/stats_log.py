"""Periodic engine statistics in the server log (as vLLM and SGLang print them): one line every
``interval`` seconds while the engine is busy or has produced tokens since the last line
(an idle server stays quiet)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

log = logging.getLogger("anyware.server.stats")

DEFAULT_INTERVAL_S = 10.0


class EngineStatsLogger:
    """Reads ``engine.stats()`` off the event loop and logs running and queued requests, KV-cache
    usage, prompt and generation throughput over the interval and the prefix-cache hit rate."""

    def __init__(self, engine: Any, interval_s: float) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self._last: Any = None
        self._last_t = 0.0

    def line(self, stats: Any, now: float) -> str | None:
        """The log line for ``stats`` read at ``now`` (``None`` when idle and nothing moved)."""
        prev, prev_t = self._last, self._last_t
        self._last, self._last_t = stats, now
        if prev is None:
            return None
        prompt = stats.prompt_tokens - prev.prompt_tokens
        gen = stats.generated_tokens - prev.generated_tokens
        if not (stats.running or stats.waiting or prompt or gen):
            return None
        dt = max(now - prev_t, 1e-9)
        cached = stats.cached_prompt_tokens - prev.cached_prompt_tokens
        usage = stats.kv_pages_used / stats.kv_pages_total if stats.kv_pages_total else 0.0
        hit = f"{100 * cached / prompt:.1f}%" if prompt else "-"
        return (
            f"engine: running={stats.running} queued={stats.waiting} "
            f"kv={100 * usage:.1f}% ({stats.kv_pages_used}/{stats.kv_pages_total} pages) "
            f"prompt={prompt / dt:.1f} tok/s generation={gen / dt:.1f} tok/s "
            f"prefix-cache-hit={hit}"
        )

    async def run(self) -> None:
        while True:
            try:
                stats = await asyncio.to_thread(self.engine.stats)
            except Exception as exc:  # the engine died: /health says so; keep the log short
                log.warning("engine stats unavailable: %s", exc)
            else:
                text = self.line(stats, time.monotonic())
                if text is not None:
                    log.info(text)
            await asyncio.sleep(self.interval_s)
