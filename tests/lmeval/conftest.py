"""The server tests' tiny model (random Llama, locally trained tokenizer) and server, for
lm-eval to run against."""

from tests.server.conftest import engine, model_dir, server  # noqa: F401
