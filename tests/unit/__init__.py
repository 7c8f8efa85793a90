"""Unit tests (CPU, no model). A package so that ``python -m tests.unit.<module>`` works and
test-module names cannot clash with other test directories."""
