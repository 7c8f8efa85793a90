"""The engine process's wire format: what crosses between the front end and the engine process
(``anyware.engine.process``) and how it is encoded.

Transport: pyzmq PUSH/PULL sockets over ``ipc://`` (one each way). Hot messages are msgpack
(msgspec, typed decoding straight into the request dataclasses); the two one-off messages (the
engine's :class:`EngineInfo` at start, an exception at a failed start) are pickled. Chosen by
``benchmarks/transport_bench.py`` (results in ``benchmarks/results/cpu/transport.json``,
docs/server.md "Process model"): one step's output for 256 requests moves at about 18k
messages/s with zmq + msgspec against about 10k with ``multiprocessing`` pipes or queues
(pickle), and a zmq send never blocks the engine loop (its I/O thread writes the socket).

Every message is a multipart frame list ``[kind, payload...]``:

front end -> engine
  ``add``    one frame: ``list[RequestSpec]`` (scheduled together)
  ``abort``  one frame: ``list[str]`` request ids
  ``call``   two frames: a call id (``int``) and the method name (``"stats"``,
             ``"check_invariants"``)
  ``stop``   no payload: finish the step in flight, shut the core down, exit 0

engine -> front end
  ``ready``  pickled :class:`EngineInfo`
  ``out``    one engine step's ``list[TokenDelta]`` (every request that moved, one message)
  ``reply``  call id, ok (``bool``), and the result (``EngineStats`` or ``None``) or an error text
  ``dead``   pickled exception (start failed) or the crash's text; the process then exits 1
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from anyware.engine.outputs import EngineStats
from anyware.request.delta import TokenDelta
from anyware.request.params import SamplingParams

ADD, ABORT, CALL, STOP = b"add", b"abort", b"call", b"stop"
READY, OUT, REPLY, DEAD = b"ready", b"out", b"reply", b"dead"
CALLS = ("stats", "check_invariants")


@dataclass
class RequestSpec:
    """A :class:`anyware.request.request.Request` as the front end builds it, without its sink
    (the engine process gives each request one that collects the step's deltas)."""

    rid: str
    prompt_ids: list[int]
    params: SamplingParams
    seed: int
    prompt_lp_next: int = 0


@dataclass
class EngineInfo:
    """What the front end needs to know about an engine it does not hold: the model, the KV
    capacity (for request checks) and where it runs (for /get_server_info)."""

    model_config: Any  # anyware.model.config.ModelConfig
    model_path: Path | None
    kv_capacity_tokens: int
    page_size: int
    platform: str
    device_name: str
    pid: int
    max_running_requests: int  # in force: configured, or sized from the KV pool

    @classmethod
    def of(cls, core: Any, pid: int) -> EngineInfo:
        return cls(core.model_config, core.model_path, core.kv_capacity_tokens,
                   core.kv.page_size, core.platform.name, core.platform.device_name(), pid,
                   core.max_running_requests)


_encoder = msgspec.msgpack.Encoder()
encode = _encoder.encode
decode_specs = msgspec.msgpack.Decoder(type=list[RequestSpec]).decode
decode_deltas = msgspec.msgpack.Decoder(type=list[TokenDelta]).decode
decode_rids = msgspec.msgpack.Decoder(type=list[str]).decode
decode_int = msgspec.msgpack.Decoder(type=int).decode
decode_str = msgspec.msgpack.Decoder(type=str).decode
decode_reply = msgspec.msgpack.Decoder(type=tuple[bool, EngineStats | str | None]).decode


def dump(obj: Any) -> bytes:
    return pickle.dumps(obj)


def load(data: bytes) -> Any:
    return pickle.loads(data)
