"""What every handler of one server needs, built once by ``create_app``."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from anyware.server.logprobs import TokenText
from anyware.server.metrics import ServerMetrics


@dataclass
class ServerState:
    engine: Any
    served_model_name: str
    api_key: str | None
    metrics: ServerMetrics
    tokenizer: Any
    text_of: TokenText
    context_len: int
    vocab_size: int
    # how the server was launched (host, port, ...), for /get_server_info
    launch: dict[str, Any] = field(default_factory=dict)
    created: int = field(default_factory=lambda: int(time.time()))
    # set on SIGTERM/SIGINT: /health answers 503 and new generation requests are refused while
    # the requests in flight finish (anyware.server.launch)
    draining: bool = False
    # log one line per generation request (its id, prompt length and sampling settings)
    log_requests: bool = False

    @classmethod
    def build(cls, engine: Any, served_model_name: str, api_key: str | None,
              launch: dict[str, Any] | None = None) -> ServerState:
        cfg = engine.model_config
        return cls(
            engine=engine,
            served_model_name=served_model_name,
            api_key=api_key,
            metrics=ServerMetrics(engine),
            tokenizer=engine.tokenizer,
            text_of=TokenText(engine.tokenizer),
            context_len=int(cfg.context_len),
            vocab_size=int(cfg.vocab_size),
            launch=dict(launch or {}),
        )

    def new_id(self, prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:24]}"
