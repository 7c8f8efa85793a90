"""Errors raised for a bad request, from the lowest layer up (request types, engine, server)."""

from anyware.plugin.errors import AnywareError


class InvalidRequestError(AnywareError, ValueError):
    """A request or its parameters are invalid; the message names the field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param
