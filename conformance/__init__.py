"""anyware_conformance: the conformance suite every platform plugin runs.

A pytest plugin (entry point ``pytest11``) plus the ``anyware conformance`` command. The suite's
version is the engine's version. Importing this package is cheap: the heavy parts load only
when a run names a platform (``--anyware-platform``).
"""

SUITE_VERSION_SOURCE = "anyware.version"
REPORT_SCHEMA_VERSION = "1.1"  # docs/conformance-schema.json; history in report_format
TIERS = ("ops", "attention", "moe", "collectives", "graphs", "memory", "engine")
