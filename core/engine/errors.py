"""Errors the engine raises to its callers."""

from anyware.plugin.errors import AnywareError


class InvalidRequestError(AnywareError, ValueError):
    """A request or its parameters are invalid; the message names the field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class EngineDeadError(AnywareError, RuntimeError):
    """The engine loop stopped because of an error; no further requests are served."""
