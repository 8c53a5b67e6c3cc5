"""Running exported models on this host: latency benchmarks (`dlkit bench`) and model inspection (`dlkit inspect`)."""

from dlkit.running.benchmark import BenchResult, bench
from dlkit.running.inspection import InspectResult, inspect

__all__ = ["BenchResult", "InspectResult", "bench", "inspect"]
