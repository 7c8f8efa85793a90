"""Offline throughput/latency benchmarking of the engine."""

from anyware.bench.offline import BenchResult, Workload, run_offline
from anyware.bench.report import summary_table

__all__ = ["BenchResult", "Workload", "run_offline", "summary_table"]
