"""How many requests may run at once when the user does not say: sized from the KV capacity.

Each running request holds a page-table row and, in every decode step, a row of every
activation; the KV pool is what actually bounds how many can make progress together. A
fixed cap is wrong both ways: on a large accelerator with an fp8 KV cache (the 8B shape on
an H200 holds ~1.7M tokens) 256 rows leave most of the pool idle and the weights are read
once per 256 tokens instead of once per 800; on a small device the cap is never reached.

``auto_max_running(kv_tokens, context_len, kv_bytes_per_token)`` is ``kv_tokens // min(TOKENS_PER_REQUEST,
context_len)`` (the requests the pool holds at a long-ish 2,048-token footprint, or the whole
context where that is shorter: past that many, requests of that size would retract each
other), never below ``AUTO_MIN`` (the fixed default this replaces: short
requests still batch as wide as before on a small pool, admission being gated on free pages
anyway) nor above ``AUTO_MAX`` (per-row buffers: page-table rows, the logits reserve of
``vocab * rows * 8`` bytes, decode graphs captured up to the cap).

**Only where the device, not the host, bounds a step**: each running row costs the host a
roughly fixed ~10 µs per step (scheduling, batch building, delivery), while its decode reads
its KV. A request whose KV at the 2,048-token footprint is under ``AUTO_MIN_ROW_BYTES``
(64 MiB: read in ~15 µs at an H200's 4.3 TB/s) keeps the cap at ``AUTO_MIN``: there more
rows add host time faster than they amortise device time. Measured (session 11): W6, a 0.5B
model (12 KB of KV per token, 24 MiB per row), ran 14.4k tok/s at the 1,024 the pool allowed
against 16–27k at 256 in earlier sessions, and on the CPU harness (``benchmarks/host_steps.py``,
W6's shape) the host spent 34% more time per token at 1,024 rows than at 256 (per-row work
touching 4x the request objects per step). The 8B shape (256 MiB per row in bf16, 128 in fp8)
keeps the pool-sized cap.

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
AUTO_MIN_ROW_BYTES = 64 << 20


def auto_max_running(kv_tokens: int, context_len: int, kv_bytes_per_token: int) -> int:
    """The running-request cap for a KV pool of ``kv_tokens`` tokens of ``kv_bytes_per_token``
    bytes (all layers, K and V) and requests of at most ``context_len`` tokens."""
    footprint = max(1, min(TOKENS_PER_REQUEST, context_len))
    if kv_bytes_per_token * footprint < AUTO_MIN_ROW_BYTES:
        return AUTO_MIN  # host-bound rows: more of them cost more than they save
    return max(AUTO_MIN, min(AUTO_MAX, kv_tokens // footprint))


def max_running_bound(max_running_requests: int | None) -> int:
    """The most rows a structure sized before the pool must allow: the user's cap, else
    ``AUTO_MAX``."""
    return AUTO_MAX if max_running_requests is None else max_running_requests
