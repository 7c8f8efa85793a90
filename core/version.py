"""The engine's version (also the conformance suite's version)."""

__version__ = "0.1.0"
