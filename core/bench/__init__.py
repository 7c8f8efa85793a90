"""Offline throughput/latency benchmarking of the engine."""

from anyware.bench.offline import BenchResult, Workload, run_offline

__all__ = ["BenchResult", "Workload", "run_offline"]
