"""`dlkit.export`: Keras to ONNX through tf2onnx, kept only when onnxruntime reproduces Keras's outputs."""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from dlkit.core import files as _files
from dlkit.core import sessions
from dlkit.core.tensors import TensorInfo
from dlkit.exporting.memory import release as release_memory
from dlkit.exporting.metadata import finish_model
from dlkit.exporting.options import (DEFAULT_ATOL, DEFAULT_NUM_SAMPLES, DEFAULT_OPSET, DEFAULT_RTOL, ExportPlan,
                                     plan_export)
from dlkit.exporting.parity_checks import Checked, check_conversion, clean_within_atol
from dlkit.exporting.results import ExportResult
from dlkit.exporting.samples import Samples, reference_run


def export(
    model: Any,
    output: str | os.PathLike | None = None,
    *,
    opset: int = DEFAULT_OPSET,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    sample_data: str | os.PathLike | Mapping[str, np.ndarray] | None = None,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    input_specs: Sequence[str | TensorInfo] = (),
    batch_size: int | None = None,
    rename: Mapping[str, str] | Sequence[str] | None = None,
    labels: str | os.PathLike | Sequence[str] | None = None,
    preprocessing: Mapping[str, Any] | None = None,
    simplify: bool = True,
    native_rnn: bool = True,
    safe_mode: bool = True,
    custom_objects: Mapping[str, Any] | None = None,
    force: bool = False,
    seed: int = 0,
    with_decoding: bool | None = None,
    stage: Callable[[str], None] | None = None,
) -> ExportResult:
    """Exports a Keras model to ONNX and checks it against Keras before keeping the file.

    Args:
        model: a `.keras` or `.h5` file, a SavedModel folder, or a `keras.Model`.
        output: the ONNX file to write. Defaults to the model's path with the suffix `.onnx`.
        opset: ONNX opset. Defaults to 17.
        atol, rtol: every output element must be within `atol + rtol * |keras|` of Keras's. Default to 1e-4 each.
        sample_data: `.npy`/`.npz` file, a folder of images, or a dict of arrays to compare on. Defaults to random
            inputs in the model's own range (0-255 pixels for a model that starts with Rescaling, Normalization,
            Resizing or CenterCrop; else [0, 1)).
        num_samples: how many random samples (or how many rows of `sample_data`) to compare. Defaults to 16.
        input_specs: `NAME:DTYPE[D0,...]` strings or `TensorInfo`s that override or add input signatures.
        batch_size: fix the batch axis to this size. Defaults to a dynamic batch.
        rename: `{old: new}` or `["old=new", ...]` for input and output names.
        labels: class labels (a text file, one per line, or a list), stored in the metadata.
        preprocessing: JSON-able hints stored in the metadata (e.g. `{"scale": 1/255}`).
        simplify: clean the graph with onnxslim and dlkit's folds. Defaults to True.
        native_rnn: export GRU/LSTM as native ONNX ops where they match. Defaults to True.
        safe_mode: load Keras files in safe mode (no Lambda code). Defaults to True.
        custom_objects: classes a Keras file needs, by name.
        force: overwrite an existing output file. Defaults to False.
        seed: seed of the random samples.
        with_decoding: a detector's decoding and NonMaxSuppression in the graph. Defaults to None: on for detectors.
        stage: called with each stage's name as it starts ("converting with tf2onnx ..."). Defaults to None.

    Returns:
        An `ExportResult`.

    Raises:
        InvalidInputError: a bad path, file or option; UnsafeModelError: a Lambda layer in safe mode.
        ConversionError: a layer that cannot be converted; ToleranceError: ONNX differs from Keras beyond tolerance.
        MissingDependencyError: the export extra is not installed.

    Example:
        >>> result = dlkit.export("sample_models/trained/cnn.keras", "cnn.onnx")
        >>> result.max_abs_error < 1e-5
        True
    """
    started = time.perf_counter()
    plan = plan_export(model, output, force=force, opset=opset, atol=atol, rtol=rtol, input_specs=input_specs, rename=rename,
                       labels=labels, sample_data=sample_data, batch_size=batch_size, num_samples=num_samples,
                       preprocessing=preprocessing, simplify=simplify, native_rnn=native_rnn, safe_mode=safe_mode,
                       custom_objects=custom_objects, seed=seed, with_decoding=with_decoding)
    stage = stage or _silent
    stage("loading the Keras model")
    source = _load(model, plan)
    inputs, decodes = plan.inputs_of(source), _decodes(source, plan)
    stage("running Keras on the check samples")
    samples = reference_run(source, inputs, plan)
    stage("converting with tf2onnx and checking parity")
    checked, report = _converted(source, inputs, samples, plan)
    checked = _cleaned(checked, source, samples, plan, stage, decodes)
    release_memory()  # the unsimplified copy and the parity sessions
    stage("writing the file")
    checked = _finished(checked, source, plan, inputs)
    _files.write_atomic(plan.output, checked.model.SerializeToString())
    return _result(plan, source, samples, checked, report, started)


def _finished(checked: Checked, source, plan: ExportPlan, inputs) -> Checked:
    """The model with dlkit's metadata; a text model's with its vectorizer too, checked from strings to outputs."""
    checked = checked._replace(model=finish_model(checked.model, source, checked.parity, plan, inputs))
    if source.text is None:
        return checked
    from dlkit.exporting.text_checks import check_strings

    return check_strings(checked, source, plan)


def _decodes(source, plan: ExportPlan) -> bool:
    """Whether the detector's decoding goes in the graph: as asked, else for a KerasHub detector.

    Raises:
        InvalidInputError: decoding asked of a model that is not a detector, or that dlkit cannot decode.
    """
    if plan.with_decoding is False:
        return False
    from dlkit.exporting.detection import is_detector, spec_of

    if plan.with_decoding is None and not (source.keras_model is not None and is_detector(source.keras_model)):
        return False
    spec_of(source, plan.inputs_of(source), plan.renames)  # before the conversion: the size, format and decoder
    return True


def _cleaned(checked: Checked, source, samples: Samples, plan: ExportPlan, stage, decodes: bool) -> Checked:
    """The checked model cleaned (when `plan.simplify`), then, for a detector, with its decoding appended
    (`exporting.detection`) and checked against Keras' predict()."""
    if plan.simplify:
        stage("cleaning the graph (each step kept only within tolerance)")
        checked = clean_within_atol(checked, samples, plan)
    if not decodes:
        return checked
    from dlkit.exporting.detection import decode_and_check

    stage("adding the box decoding and NonMaxSuppression, checked against Keras' predict()")
    return decode_and_check(checked, source, samples, plan)


def _silent(stage: str) -> None:
    """No status line."""


def _load(model: Any, plan: ExportPlan):
    """The Keras model as a `keras_loading.ModelSource` (a text model's as the numeric model after its
    TextVectorization)."""
    from dlkit.exporting.keras_loading import load
    from dlkit.exporting.text_vectorization import numeric_source

    return numeric_source(load(model, safe_mode=plan.safe_mode, custom_objects=dict(plan.custom_objects),
                               input_specs=plan.input_specs))


def _converted(source, inputs, samples: Samples, plan: ExportPlan) -> tuple[Checked, Any]:
    """The ONNX model, checked against Keras, and tf2onnx's report on the recurrent layers."""
    from dlkit.exporting.conversion import convert

    model, report = convert(source, inputs, plan.renames, plan.opset, plan.native_rnn)
    return check_conversion(model, samples, plan), report


def _result(plan: ExportPlan, source, samples: Samples, checked: Checked, report, started: float) -> ExportResult:
    return ExportResult(
        path=str(plan.output),
        source=source.description,
        inputs=sessions.graph_tensors(checked.model.graph.input),
        outputs=sessions.graph_tensors(checked.model.graph.output),
        opset=plan.opset,
        parity=checked.parity,
        atol=plan.atol,
        rtol=plan.rtol,
        num_samples=samples.count,
        sample_source=samples.source,
        native_recurrent=tuple(report.native),
        generic_recurrent=dict(report.generic),
        cleanup=checked.cleanup,
        size_bytes=plan.output.stat().st_size,
        seconds=round(time.perf_counter() - started, 3),
        notes=(*source.notes, *checked.notes),
    )
