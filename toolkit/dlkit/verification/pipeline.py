"""`dlkit.verify`: accuracy parity of a reference model (Keras or ONNX) and ONNX candidates on the same data.

The steps: check the options, open the candidates, load the reference and the samples, probe the outputs' roles,
measure every candidate batch by batch (`evaluation`), judge the figures, and write the report.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any, Callable, Sequence

from dlkit.core import judging
from dlkit.core.agreement import HISTOGRAM_EDGES, WORST_SAMPLES, WorstSample  # noqa: F401  (re-exported)
from dlkit.verification.candidates import TOP_NODES, NodeError  # noqa: F401  (re-exported)
from dlkit.verification.evaluation import candidate_results, measure, output_roles
from dlkit.verification.results import Breach, CandidateResult, VerifyResult  # noqa: F401  (re-exported)
from dlkit.verification.runners import (
    Candidates, candidate_runs, check_outputs, host_onnxruntime, open_candidates, reference_runner,
)
from dlkit.verification.samples import open_samples
from dlkit.verification.settings import VerifySettings, check_settings
from dlkit_runtime import cpu

_SQNR_SAMPLES = 64


def verify(
    reference: Any,
    candidates: str | os.PathLike | Sequence[str | os.PathLike],
    data: str | os.PathLike | None = None,
    *,
    random: int | None = None,
    atol: float | None = None,
    min_agreement: float | None = judging.MIN_AGREEMENT,
    max_accuracy_drop: float | None = judging.MAX_ACCURACY_DROP,
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
        A `VerifyResult`; a breached threshold gives `passed=False` and `breaches`, never an exception. With a Keras
        reference and a folder of images, its `decoding` compares dlkit's pixels with TensorFlow's on a sample.

    Raises:
        InvalidInputError: a missing model or data, data that does not fit the inputs, a bad option.
        ShapeMismatchError: output names or shapes differ between the reference and a candidate.

    Example:
        >>> r = dlkit.verify("cnn.keras", ["cnn.onnx", "cnn.int8.onnx"], "mnist_test.npz")
        >>> r.passed, r.candidates[0].outputs[0].top1_agreement
        (True, 1.0)
    """
    started = time.perf_counter()
    settings = check_settings(
        candidates, data, random=random, atol=atol, min_agreement=min_agreement, max_accuracy_drop=max_accuracy_drop,
        max_samples=max_samples, batch_size=batch_size, deploy_batch_size=deploy_batch_size, report=report,
        safe_mode=safe_mode, custom_objects=custom_objects, progress=progress, seed=seed,
        regression_outputs=regression_outputs, device=device, also_host=also_host)
    opened = open_candidates(settings.paths)
    _check_report_path(settings.report)  # before the work, not after it
    with contextlib.ExitStack() as stack:
        emulator = _emulator(stack, settings.device)
        return _verify(reference, settings, opened, emulator, started)


def _check_report_path(report: str | os.PathLike | None) -> None:
    if report is not None:
        from dlkit.core import files as _files

        _files.output_path(report, suffix=".html", force=True)


def _emulator(stack: contextlib.ExitStack, device: str | None):
    """The emulated device's process for the run (closed with `stack`), or None for this host."""
    if device is None:
        return None
    from dlkit.device import Emulator

    return stack.enter_context(Emulator(device))


def _verify(reference: Any, settings: VerifySettings, opened: Candidates, emulator, started: float) -> VerifyResult:
    from dlkit.verification.task_figures import task_plan

    metadata = opened.hosted[0].metadata
    plan = task_plan(metadata, [o.name for o in opened.hosted[0].outputs])
    ref_name, run_reference = reference_runner(reference, opened.inputs, settings.safe_mode, settings.custom_objects,
                                               decoded=plan.detection is not None)
    source, data_name = open_samples(settings, opened.inputs, opened.hosted[0].metadata)
    rows = candidate_runs(settings.paths, opened, emulator, settings.also_host)

    probe = next(source.batches(2))  # names and shapes before any heavy work
    expected = run_reference(probe)
    check_outputs(rows, probe, expected)
    roles = output_roles(expected, len(next(iter(probe.values()))), source,
                         (*settings.regression_outputs, *plan.outputs), opened.hosted[0].labels)
    tasks = [plan.running() for _ in rows]
    stats, done = measure(rows, source, run_reference, roles, settings, tasks)

    decoding = _decoding(reference, source, opened, run_reference, roles, settings)
    limits = settings.limits(roles.labelled)
    sqnr_feeds = probe if source.count < _SQNR_SAMPLES else source.take(0, _SQNR_SAMPLES)
    results, notes = candidate_results(rows, stats, done, limits, settings, reference, sqnr_feeds, tasks)
    result = VerifyResult(ref_name, data_name, done, opened.inputs, results, limits, roles.class_names,
                          None if settings.report is None else str(settings.report), notes,
                          round(time.perf_counter() - started, 3), cpu.host().to_dict(),
                          host_onnxruntime(opened), None if emulator is None else emulator.computed_on(), decoding)
    if settings.report is not None:
        from dlkit.verification.report import write

        write(result, settings.report)
    return result


def _decoding(reference: Any, source, opened: Candidates, run_reference, roles, settings: VerifySettings):
    """dlkit's pixels against TensorFlow's on a sample of an image folder, with a Keras reference; else None."""
    onnx_reference = isinstance(reference, (str, os.PathLike)) and str(reference).lower().endswith(".onnx")
    if onnx_reference or not getattr(source, "files", ()):
        return None
    from dlkit.verification.decoding import check_decoding

    return check_decoding(source, opened.inputs[0], opened.hosted[0].metadata, run_reference, roles,
                          batch_size=settings.batch_size)
