"""`dlkit.verify`: accuracy parity of a reference model (Keras or ONNX) and ONNX candidates on the same data.

Every figure is computed incrementally, batch by batch: running maxima and sums (means, cosine, relative error),
agreement and confusion counts, a fixed-bin histogram of per-sample error and a small heap of the samples that
disagree most. Memory does not grow with the number of samples.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from dlkit.core.agreement import (  # noqa: F401  (HISTOGRAM_EDGES, WORST_SAMPLES, WorstSample: re-exported)
    HISTOGRAM_EDGES, WORST_SAMPLES, OutputFigures, RunningFigures, WorstSample,
)
from dlkit.verification.candidates import TOP_NODES, NodeError  # noqa: F401  (TOP_NODES: re-exported)
from dlkit.verification.candidates import quantized_nodes as _quantized_nodes
from dlkit.verification import candidates as candidates_
from dlkit.core import sessions as sessions_
from dlkit.core import targets
from dlkit.errors import InvalidInputError, ShapeMismatchError
from dlkit.verification.results import Breach, CandidateResult, VerifyResult  # noqa: F401  (re-exported)
from dlkit_runtime import cpu
from dlkit.core.tensors import TensorInfo

_SQNR_SAMPLES = 64


def verify(
    reference: Any,
    candidates: str | os.PathLike | Sequence[str | os.PathLike],
    data: str | os.PathLike | None = None,
    *,
    random: int | None = None,
    atol: float | None = None,
    min_agreement: float | None = 0.99,
    max_accuracy_drop: float | None = 0.01,
    max_samples: int | None = None,
    batch_size: int = 256,
    deploy_batch_size: int = 1,
    report: str | os.PathLike | None = None,
    safe_mode: bool = True,
    custom_objects: dict | None = None,
    progress: Callable[[int, int], None] | None = None,
    seed: int = 0,
    regression_outputs: Sequence[str] = (),
    device: str | None = None,
    also_host: bool = False,
) -> VerifyResult:
    """Runs a reference and ONNX candidates on the same samples and measures how far each candidate is.

    Args:
        reference: a Keras model (`.keras`, `.h5`, a SavedModel folder or a `keras.Model`) or an `.onnx` file.
        candidates: one or more `.onnx` files (float, int8 or fp16) with the reference's output names.
        data: `.npy`, `.npz` (inputs by name, labels under `y`) or a folder of images in class sub-folders.
        random: compare on this many random samples instead of `data`.
        atol: the largest absolute error allowed on any output. Defaults to None: not checked.
        min_agreement: the smallest top-1 agreement allowed on classifier outputs. Defaults to 0.99.
        max_accuracy_drop: the largest top-1 accuracy drop allowed with labelled data (0.01 = one point).
            Defaults to 0.01.
        max_samples: compare at most this many samples. Defaults to None: all.
        batch_size: samples per run. Defaults to 256.
        deploy_batch_size: the batch size the candidates will run at when deployed. A dynamic int8 candidate picks
            its activation scales from the batch it runs in, so it is run in batches of this size; the others do not
            depend on it. Defaults to 1 (a device answering one request at a time).
        report: write an HTML report here. Defaults to None.
        safe_mode, custom_objects: as in `dlkit.export`, for a Keras reference.
        progress: called with (samples done, total) after each batch.
        seed: seed of random samples.
        regression_outputs: outputs of shape (batch, n) that are not class scores (a box, an embedding): judged by
            their errors alone, without top-1 agreement or accuracy.
        device: run the candidates on this emulated device ("rpi4", "rpi5", "aarch64"; `dlkit.device`): its own
            kernels, the wheels a bundle installs, one emulated process for the run. The reference stays on this
            host; thresholds are judged on the device's figures. Defaults to None: this host.
        also_host: with a device, also run the candidates on this host and report those figures beside the
            device's (not judged).

    Returns:
        A `VerifyResult`; a breached threshold gives `passed=False` and `breaches`, never an exception.

    Raises:
        InvalidInputError: a missing model or data, data that does not fit the inputs, a bad option.
        ShapeMismatchError: output names or shapes differ between the reference and a candidate.

    Example:
        >>> r = dlkit.verify("cnn.keras", ["cnn.onnx", "cnn.int8.onnx"], "mnist_test.npz")
        >>> r.passed, r.candidates[0].outputs[0].top1_agreement
        (True, 1.0)
    """
    from dlkit_runtime import Model

    started = time.perf_counter()
    paths = [Path(candidates)] if isinstance(candidates, (str, os.PathLike)) else [Path(c) for c in candidates]
    _validate(paths, data, random, atol, min_agreement, max_accuracy_drop, batch_size, max_samples)
    if not isinstance(deploy_batch_size, int) or deploy_batch_size < 1:
        raise InvalidInputError(f"deploy_batch_size must be a positive integer, got {deploy_batch_size!r}")
    if also_host and device is None:
        raise InvalidInputError("also_host compares a device's figures with this host's; give a device too")
    if device is not None:
        from dlkit.device import lookup

        lookup(device)  # an unknown device before any work
    hosted = [Model(p, threads=None) for p in paths]
    kinds = [candidates_.precision(p, m.metadata) for p, m in zip(paths, hosted)]
    inputs = hosted[0].inputs
    for path, model in zip(paths[1:], hosted[1:]):
        _same_inputs(f"candidate '{path}'", model.inputs, f"'{paths[0]}'", inputs)
    if report is not None:  # before the work, not after it
        from dlkit.core import files as _files

        _files.output_path(report, suffix=".html", force=True)
    import contextlib

    with contextlib.ExitStack() as stack:
        emulator = None
        if device is not None:
            from dlkit.device import Emulator

            emulator = stack.enter_context(Emulator(device))
        return _verify(reference, paths, hosted, kinds, inputs, emulator, also_host, data, random, atol,
                       min_agreement, max_accuracy_drop, max_samples, batch_size, deploy_batch_size, report,
                       safe_mode, custom_objects, progress, seed, regression_outputs, started)


def _runs(paths, hosted, kinds, emulator, also_host) -> list[tuple[Path, Any, Any, dict, bool]]:
    """(path, model, precision, computed_on, judged) per row of figures: each candidate on this host, or on the
    device (and this host first, unjudged, with also_host)."""
    import onnxruntime

    host = cpu.host().to_dict()
    rows = []
    for path, model, info in zip(paths, hosted, kinds):
        on_host = {"where": "host", "emulated": False, "cpu": host,
                   "onnxruntime": {"version": onnxruntime.__version__, "providers": list(model.providers)}}
        if emulator is None or also_host:
            rows.append((path, model, info, on_host, emulator is None))
        if emulator is not None:
            remote = emulator.load(path)
            on_device = emulator.computed_on()
            on_device["onnxruntime"] = {**on_device["onnxruntime"], "providers": list(remote.providers)}
            rows.append((path, remote, info, on_device, True))
    return rows


def _verify(reference, paths, hosted, kinds, inputs, emulator, also_host, data, random, atol, min_agreement,
            max_accuracy_drop, max_samples, batch_size, deploy_batch_size, report, safe_mode, custom_objects,
            progress, seed, regression_outputs, started) -> VerifyResult:
    ref_name, run_reference = _reference(reference, inputs, safe_mode, custom_objects)
    source, data_name = _data(data, random, inputs, hosted[0].metadata, batch_size, seed, max_samples)
    rows = _runs(paths, hosted, kinds, emulator, also_host)

    probe = next(source.batches(2))  # names and shapes before any heavy work
    probe_count = len(next(iter(probe.values())))
    expected = run_reference(probe)
    for path, model, _, _, _ in rows:
        _check_outputs(path, expected, sessions_.predict(model, probe, None))
    batched = {n for n, v in expected.items() if v.ndim >= 1 and v.shape[0] == probe_count}
    unknown = [n for n in regression_outputs if n not in expected]
    if unknown:
        raise InvalidInputError(f"regression output(s) {unknown} are not outputs of the models ({sorted(expected)})")
    classifier = _classifiers(expected, batched, regression_outputs)
    labelled = source.labels is not None and bool(classifier)
    width = expected[classifier[0]].shape[1] if classifier else 0
    class_names = hosted[0].labels or (source.class_names if source.class_names and
                                       len(source.class_names) == width else None)
    primary = (classifier or [n for n in expected if n in batched] or [None])[0]
    stats = [{n: RunningFigures(n, v.shape[1] if n in classifier else 0, n == primary,
                                labelled and n == classifier[0]) for n, v in expected.items()} for _ in rows]

    done = 0
    for batch in source.batches(batch_size):
        ref = run_reference(batch)
        labels = source.labels[done:done + len(next(iter(batch.values())))] if source.labels is not None else None
        count = len(next(iter(batch.values())))
        for (_, model, info, _, _), per_output in zip(rows, stats):
            got = sessions_.predict(model, batch, deploy_batch_size if info.dynamic else None)
            for name, stat in per_output.items():
                if name in batched:
                    stat.update(ref[name], got[name], done, batch, labels)
                else:  # a scalar or an output without a batch axis first: the batch's whole output is one row
                    stat.update(ref[name].reshape(1, -1), got[name].reshape(1, -1), done, batch, None)
        done += count
        if progress is not None:
            progress(done, source.count)

    limits = {"atol": atol, "min_agreement": min_agreement, "max_accuracy_drop": max_accuracy_drop if labelled else None}
    notes: list[str] = []
    results = []
    ranked: dict[Path, tuple] = {}
    for (path, _, info, computed_on, judged), per_output in zip(rows, stats):
        outputs = tuple(s.figures() for s in per_output.values())
        if path not in ranked:  # per-node SQNR is a property of the file: ranked once, on this host
            ranked[path] = _quantized_nodes(path, info, reference, paths, probe if source.count < _SQNR_SAMPLES
                                            else source.take(0, _SQNR_SAMPLES), notes)
        kernels = cpu.CpuKind.from_dict(computed_on["cpu"])
        warning = targets.mismatch(info.target, info.settings, kernels) if info.kind == "int8" else None
        results.append(CandidateResult(str(path), info.kind, outputs, ranked[path],
                                       _breaches(str(path), outputs, limits) if judged else (), info.dynamic,
                                       info.target, min(deploy_batch_size if info.dynamic else batch_size, done),
                                       warning, computed_on, judged))
    import onnxruntime

    result = VerifyResult(ref_name, data_name, done, tuple(inputs), tuple(results), limits, class_names,
                          None if report is None else str(report), tuple(notes),
                          round(time.perf_counter() - started, 3), cpu.host().to_dict(),
                          {"version": onnxruntime.__version__, "providers": sorted({p for m in hosted
                                                                                    for p in m.providers})},
                          None if emulator is None else emulator.computed_on())
    if report is not None:
        from dlkit.verification import report as _report

        _report.write(result, report)
    return result


def _same_inputs(name: str, got: Sequence[TensorInfo], other: str, want: Sequence[TensorInfo]) -> None:
    """Same input names, and the same size on every axis both fix."""
    if {i.name for i in got} != {i.name for i in want}:
        raise ShapeMismatchError(f"{name} takes inputs {[i.name for i in got]}, {other} take(s) "
                                 f"{[i.name for i in want]}; the models must share inputs")
    wanted = {i.name: i for i in want}
    for info in got:
        shape = wanted[info.name].shape
        clash = len(info.shape) != len(shape) or any(isinstance(a, int) and isinstance(b, int) and a != b
                                                     for a, b in zip(info.shape, shape))
        if clash:
            raise ShapeMismatchError(f"{name} takes input '{info.name}' as {_dims(info.shape)}, {other} as "
                                     f"{_dims(shape)}; compare models of the same input shape")


def _dims(shape) -> str:
    return "(" + ", ".join(str(d) if d is not None else "?" for d in shape) + ")"


def _classifiers(expected: Mapping[str, np.ndarray], batched, regression: Sequence[str]) -> list[str]:
    """Outputs judged by top-1 agreement: every (batch, classes) output not named in `regression`."""
    return [n for n, v in expected.items() if n in batched and v.ndim == 2 and v.shape[1] >= 2 and n not in regression]


def _validate(paths, data, random, atol, min_agreement, max_accuracy_drop, batch_size, max_samples) -> None:
    if not paths:
        raise InvalidInputError("no candidate given; pass one or more .onnx files to compare with the reference")
    for path in paths:
        if not path.is_file() or path.suffix.lower() != ".onnx":
            raise InvalidInputError(f"candidate '{path}' is not an .onnx file; candidates are ONNX models "
                                    "(export a Keras model with dlkit export first)")
    if (data is None) == (random is None):
        raise InvalidInputError("give either data (.npy, .npz or an image folder) or random=N samples, not "
                                f"{'both' if data is not None else 'neither'}")
    for value, name in ((random, "random"), (batch_size, "batch_size"), (max_samples, "max_samples")):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    for value, name in ((atol, "atol"), (min_agreement, "min_agreement"), (max_accuracy_drop, "max_accuracy_drop")):
        if value is not None and not (value >= 0 and (name == "atol" or value <= 1)):
            raise InvalidInputError(f"{name} must be {'>= 0' if name == 'atol' else 'in [0, 1]'}, got {value}")


def _reference(reference, inputs, safe_mode, custom_objects) -> tuple[str, Callable[[dict], dict]]:
    """A name for the reference and a function from a feed dict to named numpy outputs."""
    if isinstance(reference, (str, os.PathLike)) and Path(reference).suffix.lower() == ".onnx":
        from dlkit_runtime import Model

        model = Model(reference)
        _same_inputs(f"reference '{reference}'", model.inputs, "the candidates", inputs)
        return str(reference), lambda batch: sessions_.predict(model, batch, None)
    from dlkit.exporting.keras_loading import load

    source = load(reference, safe_mode=safe_mode, custom_objects=custom_objects)
    missing = [i.name for i in source.inputs if i.name not in {c.name for c in inputs}]
    if missing:
        raise ShapeMismatchError(f"the reference {source.description} takes inputs {[i.name for i in source.inputs]},"
                                 f" the candidates take {[i.name for i in inputs]}; export with --rename to match")
    import tensorflow as tf

    def run(batch: dict) -> dict:
        out = source.call(*[tf.constant(batch[i.name]) for i in source.inputs])
        return {k: np.asarray(v) for k, v in out.items()}

    return str(reference) if isinstance(reference, (str, os.PathLike)) else source.description, run


class _Random:
    """Random samples generated batch by batch (a fresh seed per batch), with the DataSource interface."""

    labels = None
    class_names = None

    def __init__(self, inputs, count, seed):
        self.inputs, self.count, self.seed = inputs, count, seed

    def batches(self, batch_size: int):
        from dlkit.core.parity import random_inputs

        for index, first in enumerate(range(0, self.count, batch_size)):
            yield random_inputs(self.inputs, min(batch_size, self.count - first), seed=self.seed + index)

    def take(self, start: int, stop: int) -> dict:
        return next(self.batches(stop - start))


def _data(data, random, inputs, metadata, batch_size, seed, max_samples):
    if random is not None:
        count = random if max_samples is None else min(random, max_samples)
        return _Random(inputs, count, seed), f"random ({count} samples)"
    from dlkit.core.datasources import open_data

    source = open_data(data, inputs, metadata=metadata, what="data")
    if max_samples is not None and max_samples < source.count:
        source.count = max_samples
    return source, str(data)


def _check_outputs(path, reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray]) -> None:
    from dlkit.core.parity import compare

    try:
        compare(reference, candidate)
    except ShapeMismatchError as err:
        raise ShapeMismatchError(f"candidate '{path}': {err}; the reference and candidates must have the same "
                                 "outputs (rename them at export with --rename)") from None


def _breaches(path: str, outputs: Sequence[OutputFigures], limits: Mapping[str, float | None]) -> tuple[Breach, ...]:
    found = []
    for o in outputs:
        if limits["atol"] is not None and not o.max_abs_error <= limits["atol"]:
            found.append(Breach(path, o.name, "max_abs_error", limits["atol"], o.max_abs_error))
        if limits["min_agreement"] is not None and o.top1_agreement is not None \
                and o.top1_agreement < limits["min_agreement"]:
            found.append(Breach(path, o.name, "top1_agreement", limits["min_agreement"], o.top1_agreement))
        if limits["max_accuracy_drop"] is not None and o.accuracy_drop is not None \
                and o.accuracy_drop > limits["max_accuracy_drop"]:
            found.append(Breach(path, o.name, "accuracy_drop", limits["max_accuracy_drop"], o.accuracy_drop))
    return tuple(found)
