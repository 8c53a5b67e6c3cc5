"""Workarounds for onnxruntime.quantization's histogram calibrators (`--method entropy` and `percentile`), applied
once, in `quantizers.Quantizer`.

1. Batches of one size. `HistogramCalibrater.collect_data` keeps every batch's outputs in a list per tensor and
   `HistogramCollector.collect_value` turns that list into one array (`np.asarray(data_arr)`) before flattening it:
   batches of different sizes make a ragged list, and numpy raises `ValueError: ... inhomogeneous shape`. A last
   batch of 5 after batches of 32 (37 samples) is enough. MinMax reduces each batch on its own and is not affected.
   Upstream: microsoft/onnxruntime#18792 (closed unfixed), the fix proposed in microsoft/onnxruntime#32514
   (flatten each batch first). Delete `histogram_batch` once the onnxruntime dlkit requires flattens per batch.
2. Quiet. The same collector `print`s its progress ("Collecting tensor data and making histogram ...", "Number of
   tensors : ...") to stdout, where dlkit prints only its result or its JSON. No upstream issue; delete `quiet`
   when those prints become `logging` calls.
"""

from __future__ import annotations

import contextlib
import io

HISTOGRAM_METHODS = ("entropy", "percentile")


def histogram_batch(count: int, largest: int) -> int:
    """The calibration batch for a histogram method: the largest divisor of `count` not above `largest`, so that
    every batch has the same size.

    A divisor rather than `largest` with the last batch padded or dropped: the histograms then count every
    calibration sample exactly once (padding would count one sample several times, dropping would lose up to
    `largest - 1` of them, and both would make the ranges depend on the batch size). The cost is speed only: a
    prime count (37, 181) runs one sample at a time, which changes no histogram (they are over all values).
    """
    return next(size for size in range(min(largest, max(count, 1)), 0, -1) if count % size == 0)


def quiet():
    """A context in which onnxruntime's calibrators print to nowhere instead of dlkit's stdout."""
    return contextlib.redirect_stdout(io.StringIO())
