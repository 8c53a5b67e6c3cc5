"""`dlkit.bench`: how fast an ONNX model runs here: cold start, latency percentiles, throughput, peak memory."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dlkit.errors import InvalidInputError


@dataclass(frozen=True)
class BatchTiming:
    """Latency of one batch size.

    Attributes:
        batch_size: samples per run.
        runs: timed runs (after `warmup` untimed ones).
        p50_ms, p90_ms, p99_ms, mean_ms: latency of one run in milliseconds.
        throughput_per_s: samples per second at the median latency.
    """

    batch_size: int
    runs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    throughput_per_s: float

    def to_dict(self) -> dict:
        return dict(vars(self))


@dataclass(frozen=True)
class BenchResult:
    """What `dlkit.bench` measured.

    Attributes:
        path: the ONNX file.
        providers: the execution providers that really ran, e.g. ("cpu",).
        threads: intra-op threads.
        load_ms: building the session.
        first_run_ms: the first run at the first batch size (allocations, lazy initialization).
        cold_start_ms: `load_ms + first_run_ms`: what a process pays before its first answer.
        timings: one `BatchTiming` per batch size.
        peak_rss_bytes: the process's peak resident memory (`getrusage` ru_maxrss) at the end: everything the
            process ever held, the Python interpreter and, with `compare`, Keras included.
        compare: Keras's timings on the same inputs when `compare` was given, else empty.
        keras_ratio: per batch size, Keras's median latency over ONNX's (above 1: ONNX is faster).
    """

    path: str
    providers: tuple[str, ...]
    threads: int
    load_ms: float
    first_run_ms: float
    cold_start_ms: float
    timings: tuple[BatchTiming, ...]
    peak_rss_bytes: int
    compare: tuple[BatchTiming, ...] = ()
    keras_ratio: dict[int, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "path": self.path, "providers": list(self.providers), "threads": self.threads, "load_ms": self.load_ms,
            "first_run_ms": self.first_run_ms, "cold_start_ms": self.cold_start_ms,
            "timings": [t.to_dict() for t in self.timings], "peak_rss_bytes": self.peak_rss_bytes,
            "compare": [t.to_dict() for t in self.compare],
            "keras_ratio": {str(k): v for k, v in self.keras_ratio.items()},
        }


def bench(
    model: str | os.PathLike,
    batch_sizes: Sequence[int] = (1,),
    *,
    threads: int | None = None,
    providers: str | Sequence[str] | None = None,
    runs: int = 100,
    warmup: int = 5,
    compare: str | os.PathLike | None = None,
    strict: bool = False,
    dynamic_size: int = 1,
) -> BenchResult:
    """Measures an ONNX model on random inputs of its shapes, in this process.

    Args:
        model: the `.onnx` file.
        batch_sizes: batch sizes to time (a dynamic batch axis only). Defaults to (1,).
        threads: intra-op threads. Defaults to None: the physical cores.
        providers: execution providers by short name, as `dlkit_runtime.Model`. Defaults to None.
        runs: timed runs per batch size. Defaults to 100.
        warmup: untimed runs before them. Defaults to 5.
        compare: a Keras file to run on the same inputs (needs TensorFlow). Defaults to None.
        strict: fail when a provider is missing. Defaults to False.
        dynamic_size: the size of every dynamic axis but the batch (a sequence length, an image side).
            Defaults to 1: one step of a recurrent model.

    Returns:
        A `BenchResult`.

    Raises:
        InvalidInputError: a bad path, batch size or count; a fixed batch axis asked for another size.
        MissingDependencyError: `compare` without Keras installed.
        ProviderError: `strict=True` and a provider is missing.

    Example:

    >>> result = dlkit.bench("cnn.onnx", batch_sizes=(1, 32))
    >>> result.timings[0].p50_ms
    0.21
    """
    from dlkit_runtime import Model
    from dlkit_runtime.tensors import sample_inputs

    batch_sizes = _check_options(batch_sizes, runs, warmup, compare, dynamic_size)
    started = time.perf_counter()
    onnx_model = Model(model, providers=providers, threads=threads, strict=strict)
    load_ms = _ms(time.perf_counter() - started)
    feeds = {b: sample_inputs(onnx_model.inputs, b, dynamic_size=dynamic_size, seed=b) for b in batch_sizes}
    for b in batch_sizes:
        _check_batch(onnx_model, b)
    first_run_ms = _first_run(onnx_model, feeds[batch_sizes[0]], dynamic_size)
    timings = tuple(_time(lambda f=feeds[b]: onnx_model.predict(f), b, runs, warmup) for b in batch_sizes)
    compared = () if compare is None else _keras_timings(compare, onnx_model.inputs, feeds, batch_sizes, runs, warmup)
    return BenchResult(
        path=str(onnx_model.path), providers=onnx_model.providers, threads=onnx_model.threads, load_ms=load_ms,
        first_run_ms=first_run_ms, cold_start_ms=round(load_ms + first_run_ms, 3), timings=timings,
        peak_rss_bytes=_peak_rss_bytes(), compare=compared,
        keras_ratio={o.batch_size: round(k.p50_ms / o.p50_ms, 3) for o, k in zip(timings, compared)},
    )


def _check_options(batch_sizes: Sequence[int], runs: int, warmup: int, compare: Any, dynamic_size: int) -> tuple[int, ...]:
    """The batch sizes as a tuple, after checking every count and the --compare file."""
    batch_sizes = tuple(batch_sizes)
    if not batch_sizes or any(not isinstance(b, int) or b < 1 for b in batch_sizes):
        raise InvalidInputError(f"batch sizes must be positive integers, got {list(batch_sizes)}")
    if not isinstance(dynamic_size, int) or dynamic_size < 1:
        raise InvalidInputError(f"dynamic_size must be a positive integer, got {dynamic_size!r}")
    if runs < 1 or warmup < 0:
        raise InvalidInputError(f"runs must be >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    if compare is not None and not Path(compare).exists():
        raise InvalidInputError(f"--compare model '{compare}' does not exist; give the Keras file the ONNX came from")
    return batch_sizes


def _first_run(model, feeds: dict, dynamic_size: int) -> float:
    """Milliseconds of the first run (allocations, lazy initialization)."""
    started = time.perf_counter()
    try:
        model.predict(feeds)
    except InvalidInputError as err:
        if not any(isinstance(d, str) or d is None for i in model.inputs for d in i.shape[1:]):
            raise
        raise InvalidInputError(f"{err}; random inputs gave its dynamic axes size {dynamic_size}: pass "
                                "--dynamic-size with a size the model takes") from err
    return _ms(time.perf_counter() - started)


def _keras_timings(path: Any, inputs, feeds: dict, batch_sizes: Sequence[int], runs: int,
                   warmup: int) -> tuple[BatchTiming, ...]:
    """Keras's timings on the same feeds, per batch size."""
    keras_model = _load_keras(path)
    order = [i.name for i in inputs]
    return tuple(
        _time(lambda f=feeds[b]: keras_model.predict_on_batch([f[n] for n in order] if len(order) > 1 else f[order[0]]),
              b, runs, warmup) for b in batch_sizes)


def _check_batch(model, batch_size: int) -> None:
    for info in model.inputs:
        if info.shape and isinstance(info.shape[0], int) and info.shape[0] != batch_size:
            raise InvalidInputError(f"input '{info.name}' has a fixed batch axis of {info.shape[0]}; "
                                    f"use --batch {info.shape[0]} (asked for {batch_size})")


def _time(run, batch_size: int, runs: int, warmup: int) -> BatchTiming:
    for _ in range(warmup):
        run()
    times = np.empty(runs)
    for i in range(runs):
        started = time.perf_counter()
        run()
        times[i] = time.perf_counter() - started
    p50, p90, p99 = (float(np.percentile(times, q)) for q in (50, 90, 99))
    return BatchTiming(batch_size, runs, _ms(p50), _ms(p90), _ms(p99), _ms(float(times.mean())),
                       round(batch_size / p50, 1) if p50 > 0 else float("inf"))


def _load_keras(path: Any):
    from dlkit.core import dependencies as _deps

    keras = _deps.require("keras", "dlkit bench --compare")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as err:  # Keras raises ValueError, OSError, TypeError for unreadable files
        raise InvalidInputError(f"Keras cannot load --compare model '{path}': {str(err).splitlines()[0]}") from err


def _peak_rss_bytes() -> int:
    try:
        import resource
    except ImportError:  # Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, kilobytes on Linux


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 4)
