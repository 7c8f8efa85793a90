"""How many requests may run at once when the user does not say: sized from the KV capacity.

Each running request holds a page-table row and, in every decode step, a row of every
activation; the KV pool is what actually bounds how many can make progress together. A
fixed cap is wrong both ways: on a large accelerator with an fp8 KV cache (the 8B shape on
an H200 holds ~1.7M tokens) 256 rows leave most of the pool idle and the weights are read
once per 256 tokens instead of once per 800; on a small device the cap is never reached.

``auto_max_running(kv_tokens, context_len)`` is ``kv_tokens // min(TOKENS_PER_REQUEST,
context_len)`` (the requests the pool holds at a long-ish 2,048-token footprint, or the whole
context where that is shorter: past that many, requests of that size would retract each
other), never below ``AUTO_MIN`` (the fixed default this replaces: short
requests still batch as wide as before on a small pool, admission being gated on free pages
anyway) nor above ``AUTO_MAX`` (per-row buffers: page-table rows, the logits reserve of
``vocab * rows * 8`` bytes, decode graphs captured up to the cap).

The pool itself is sized as it was with the fixed cap: the device's budget, but never more
than ``AUTO_MIN`` requests at the full context could fill. So the cap grows past ``AUTO_MIN``
only where the pool holds more 2,048-token requests than that (a context above 2,048 tokens
and a budget above ``AUTO_MIN * 2048`` tokens: the 8B shape at an 8k context on an H200
gives 410 rows in bf16, 859 with an fp8 cache), and no pool grows because the cap did (on a
host with memory to spare, tiny models keep their small pools).

Structures that must exist before the pool is sized (the attention backend's spec, the
platform's ``max_batch_size``, the activation reserve the pool is sized after) use
``AUTO_MAX`` as their bound; the page table and the scheduler use the resolved cap.
"""

from __future__ import annotations

AUTO_MIN = 256
AUTO_MAX = 1024
TOKENS_PER_REQUEST = 2048


def auto_max_running(kv_tokens: int, context_len: int) -> int:
    """The running-request cap for a KV pool of ``kv_tokens`` tokens and requests of at most
    ``context_len`` tokens."""
    footprint = max(1, min(TOKENS_PER_REQUEST, context_len))
    return max(AUTO_MIN, min(AUTO_MAX, kv_tokens // footprint))


def max_running_bound(max_running_requests: int | None) -> int:
    """The most rows a structure sized before the pool must allow: the user's cap, else
    ``AUTO_MAX``."""
    return AUTO_MAX if max_running_requests is None else max_running_requests
