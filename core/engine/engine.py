"""`Engine`: the offline Python API (sync, streaming, asyncio) over an `EngineLoop` (the core
in a thread of this process) or a `ProcessEngineLoop` (the core in a child process)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import queue
import random
import threading
import uuid
import weakref
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

from anyware.engine.config import DEMO_MODEL, EngineConfig
from anyware.engine.core import EngineCore
from anyware.engine.detokenizer import OutputAssembler
from anyware.engine.errors import EngineDeadError
from anyware.engine.loop import EngineLoop
from anyware.engine.outputs import EngineStats, RequestOutput
from anyware.engine.wire import EngineInfo
from anyware.request import InvalidRequestError
from anyware.request.delta import TokenDelta
from anyware.request.params import SamplingParams
from anyware.request.request import Request

Prompt = str | Sequence[int]


def _load_tokenizer(path: Path | None):
    if path is None:
        return None
    if not any((path / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


class _Mailbox:
    """Delivers deltas from the engine thread to one asyncio event loop with a single
    thread-safe wake-up per burst (an engine step finishes many requests' tokens at once)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._items: list[tuple[asyncio.Queue, TokenDelta]] = []
        self._lock = threading.Lock()
        self._scheduled = False

    def post(self, inbox: asyncio.Queue, delta: TokenDelta) -> None:
        with self._lock:
            self._items.append((inbox, delta))
            if self._scheduled:
                return
            self._scheduled = True
        with contextlib.suppress(RuntimeError):  # the consumer's loop closed: nobody listens
            self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            items, self._items, self._scheduled = self._items, [], False
        for inbox, delta in items:
            inbox.put_nowait(delta)


class Engine:
    """See docs/engine-api.md."""

    def __init__(self, model: str | None = None, *, engine_process: bool = False,
                 **options) -> None:
        """``model``: a Hugging Face model directory, a shape preset, or ``None`` /
        ``"anyware-demo"`` for the built-in demo model (see docs/engine-api.md).
        ``engine_process``: run the scheduler and the model in a child process (what
        ``anyware serve`` does; docs/server.md "Process model"); ``engine.core`` is then
        ``None`` and ``engine.info`` describes the engine."""
        self.config = EngineConfig.from_kwargs(model, **options)
        self.core: EngineCore | None = None
        if engine_process:
            from anyware.engine.remote import ProcessEngineLoop

            self._loop = ProcessEngineLoop(self.config, self.config.debug_invariants)
            self.info: EngineInfo = self._loop.info
        else:
            self.core = EngineCore(self.config)
            self._loop = EngineLoop(self.core, self.config.debug_invariants)
            self.info = EngineInfo.of(self.core, os.getpid())
        self.model_config = self.info.model_config
        tok_path = Path(self.config.tokenizer) if self.config.tokenizer else self.info.model_path
        self.tokenizer = _load_tokenizer(tok_path)
        if model is None or model == DEMO_MODEL:
            self.model_name = DEMO_MODEL
        else:
            self.model_name = Path(model).name if self.info.model_path else model
        self._rng = random.Random(self.config.seed)
        self._ids = itertools.count()
        self._mailboxes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    # ------------------------------------------------------------ request building
    def _prompt_ids(self, prompt: Prompt) -> list[int]:
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise InvalidRequestError("this model has no tokenizer; pass token ids", "prompt")
            ids = self.tokenizer.encode(prompt)
        else:
            ids = [int(t) for t in prompt]
        if not ids:
            raise InvalidRequestError("the prompt is empty", "prompt")
        vocab = self.model_config.vocab_size
        bad = [t for t in ids if not 0 <= t < vocab]
        if bad:
            raise InvalidRequestError(f"token ids {bad[:5]} are outside the vocabulary [0, {vocab})", "prompt")
        ctx = self.model_config.context_len
        if len(ids) >= ctx:
            raise InvalidRequestError(
                f"the prompt has {len(ids)} tokens; the context length is {ctx} "
                f"(the prompt must leave room for at least one new token)", "prompt")
        return ids

    def _requests(self, prompt: Prompt, params: SamplingParams, request_id: str | None, sink):
        if not isinstance(params, SamplingParams):
            raise InvalidRequestError("params must be a SamplingParams", "params")
        ids = self._prompt_ids(prompt)
        need = min(len(ids) + params.max_new_tokens, self.model_config.context_len)
        if need > self.info.kv_capacity_tokens:
            raise InvalidRequestError(
                f"the request needs up to {need} tokens of KV cache (prompt + max_new_tokens) but "
                f"the pool holds {self.info.kv_capacity_tokens}; lower max_new_tokens or raise "
                f"mem_fraction / kv_cache_bytes", "max_new_tokens")
        rid = request_id or f"req-{next(self._ids)}-{uuid.uuid4().hex[:8]}"
        base = params.seed if params.seed is not None else self._rng.getrandbits(63)
        children = [rid] if params.n == 1 else [f"{rid}#{i}" for i in range(params.n)]
        # prompt logprobs are the same for every child: only the first computes them
        reqs = [Request(cid, list(ids), params, (base + 0x9E3779B97F4A7C15 * i) % (1 << 63), sink,
                        prompt_lp_next=0 if i == 0 else len(ids))
                for i, cid in enumerate(children)]
        assembler = OutputAssembler(rid, ids, params, self.tokenizer, children)
        return reqs, assembler

    def _abort_children(self, assembler: OutputAssembler) -> None:
        for cid, i in assembler.index.items():
            if not assembler.seqs[i].finished:
                self._loop.abort(cid)

    def _apply(self, assembler: OutputAssembler, delta: TokenDelta) -> None:
        for cid in assembler.add(delta):
            self._loop.abort(cid)
        if assembler.error:
            raise EngineDeadError(f"the engine loop failed: {assembler.error}")

    # ------------------------------------------------------------ sync API
    def generate(self, prompts: Prompt | Sequence[Prompt],
                 params: SamplingParams | Sequence[SamplingParams] | None = None) -> list[RequestOutput]:
        if isinstance(prompts, str) or (prompts and isinstance(prompts[0], int)):
            prompts = [prompts]
        params = params or SamplingParams()
        plist = list(params) if isinstance(params, (list, tuple)) else [params] * len(prompts)
        if len(plist) != len(prompts):
            raise InvalidRequestError("give one SamplingParams or one per prompt", "params")
        inbox: queue.SimpleQueue = queue.SimpleQueue()
        assemblers, owner, reqs = [], {}, []
        for prompt, p in zip(prompts, plist):
            rs, asm = self._requests(prompt, p, None, inbox.put)
            assemblers.append(asm)
            owner.update({r.rid: asm for r in rs})
            reqs.extend(rs)
        self._loop.submit(reqs)
        pending = len(assemblers)
        while pending:
            delta = self._get(inbox)
            asm = owner[delta.request_id]
            was = asm.finished
            self._apply(asm, delta)
            pending -= int(asm.finished and not was)
        return [a.final_output() for a in assemblers]

    def _get(self, inbox: queue.SimpleQueue) -> TokenDelta:
        while True:
            try:
                return inbox.get(timeout=1.0)
            except queue.Empty:
                self._loop._check_alive()

    def stream(self, prompt: Prompt, params: SamplingParams | None = None,
               request_id: str | None = None) -> Iterator[RequestOutput]:
        inbox: queue.SimpleQueue = queue.SimpleQueue()
        reqs, asm = self._requests(prompt, params or SamplingParams(), request_id, inbox.put)
        self._loop.submit(reqs)
        sent = [(0, 0)] * len(reqs)
        try:
            while not asm.finished:
                self._apply(asm, self._get(inbox))
                yield asm.delta_output(sent)
        finally:
            if not asm.finished:
                self._abort_children(asm)

    # ------------------------------------------------------------ asyncio API
    async def generate_async(self, prompt: Prompt, params: SamplingParams | None = None,
                             request_id: str | None = None) -> AsyncIterator[RequestOutput]:
        loop = asyncio.get_running_loop()
        mailbox = self._mailboxes.get(loop)
        if mailbox is None:
            mailbox = self._mailboxes[loop] = _Mailbox(loop)
        inbox: asyncio.Queue = asyncio.Queue()

        def sink(delta: TokenDelta) -> None:
            mailbox.post(inbox, delta)

        reqs, asm = self._requests(prompt, params or SamplingParams(), request_id, sink)
        self._loop.submit(reqs)
        sent = [(0, 0)] * len(reqs)
        try:
            while not asm.finished:
                # a crashed loop sends every request a final delta with the error, so a plain
                # wait never hangs (EngineLoop._fail_all)
                self._apply(asm, await inbox.get())
                while not inbox.empty() and not asm.finished:  # coalesce what is ready
                    self._apply(asm, inbox.get_nowait())
                yield asm.delta_output(sent)
        finally:
            if not asm.finished:
                self._abort_children(asm)

    # ------------------------------------------------------------ control
    def abort(self, request_id: str) -> None:
        """Abort a request (all of its ``n`` completions)."""
        self._loop.abort(request_id)

    def stats(self) -> EngineStats:
        return self._loop.stats()

    def check_invariants(self) -> None:
        self._loop.check_invariants()

    @property
    def error(self) -> BaseException | None:
        """Why the engine stopped serving (``None`` while it runs)."""
        return self._loop.error

    def on_death(self, callback) -> None:
        """Call ``callback(cause: str)`` once if the engine dies (a crashed loop, a killed
        engine process); from an engine-side thread."""
        self._loop.on_death(callback)

    def shutdown(self) -> None:
        self._loop.stop()
        if self.core is not None:
            self.core.shutdown()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
