"""Errors the engine raises to its callers (a bad request's is
:class:`anyware.request.InvalidRequestError`)."""

from anyware.plugin.errors import AnywareError


class EngineDeadError(AnywareError, RuntimeError):
    """The engine loop stopped because of an error; no further requests are served."""
