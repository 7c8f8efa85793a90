"""The conformance tests, one module per tier. Collected only with ``--anyware-platform``."""
