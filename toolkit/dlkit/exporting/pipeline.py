"""`dlkit.export`: Keras to ONNX through tf2onnx, kept only when onnxruntime reproduces Keras's outputs."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from dlkit.core import dependencies as _deps
from dlkit.core import files as _files
from dlkit.exporting import memory as _memory
from dlkit.core import parity
from dlkit.core import sessions
from dlkit.errors import ConversionError, InvalidInputError, MissingDependencyError, ToleranceError
from dlkit.exporting.results import ExportResult
from dlkit.core.parity import OutputParity
from dlkit.core.tensors import TensorInfo, parse_input_spec, parse_renames

DEFAULT_OPSET = 17
DEFAULT_ATOL = 1e-4
DEFAULT_NUM_SAMPLES = 16


def export(
    model: Any,
    output: str | os.PathLike | None = None,
    *,
    opset: int = DEFAULT_OPSET,
    atol: float = DEFAULT_ATOL,
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
) -> ExportResult:
    """Exports a Keras model to ONNX and checks it against Keras before keeping the file.

    Args:
        model: a `.keras` or `.h5` file, a SavedModel folder, or a `keras.Model`.
        output: the ONNX file to write. Defaults to the model's path with the suffix `.onnx`.
        opset: ONNX opset. Defaults to 17.
        atol: largest absolute difference allowed between Keras and ONNX outputs. Defaults to 1e-4.
        sample_data: `.npy`/`.npz` file or dict of arrays to compare on. Defaults to random inputs.
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

    Returns:
        An `ExportResult`.

    Raises:
        InvalidInputError: a bad path, file or option; UnsafeModelError: a Lambda layer in safe mode.
        ConversionError: a layer that cannot be converted; ToleranceError: ONNX differs from Keras beyond `atol`.
        MissingDependencyError: the export extra is not installed.

    Example:
        >>> result = dlkit.export("sample_models/trained/cnn.keras", "cnn.onnx")
        >>> result.max_abs_error < 1e-5
        True
    """
    started = time.perf_counter()
    from dlkit.exporting import keras_loading as loading

    out_path = _files.output_path(output, default_from=model if isinstance(model, (str, os.PathLike)) else None,
                                  suffix=".onnx", force=force)
    if isinstance(model, (str, os.PathLike)) and Path(model).resolve() == out_path.resolve():
        raise InvalidInputError(f"output '{out_path}' is the model itself; choose another output path")
    _check_opset(opset)
    if atol <= 0:
        raise InvalidInputError(f"atol must be > 0, got {atol}")
    specs = tuple(s if isinstance(s, TensorInfo) else parse_input_spec(s) for s in input_specs)
    renames = parse_renames(rename)
    label_list = _read_labels(labels)
    if isinstance(sample_data, (str, os.PathLike)) and not Path(sample_data).is_file():
        raise InvalidInputError(f"sample data '{sample_data}' does not exist; give an .npy or .npz file")

    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise InvalidInputError(f"batch_size must be a positive integer (or None for a dynamic batch), got {batch_size!r}")

    source = loading.load(model, safe_mode=safe_mode, custom_objects=dict(custom_objects or {}), input_specs=specs)
    inputs = tuple(
        TensorInfo(i.name, i.dtype, (batch_size, *i.shape[1:]) if batch_size and i.shape else i.shape)
        for i in source.inputs
    )

    samples, sample_source = _samples(sample_data, source.inputs, num_samples, source, seed)
    chunk = batch_size or sessions.BATCH  # a fixed batch runs the samples that many at a time
    samples = _whole_batches(samples, batch_size)
    count = len(next(iter(samples.values())))
    reference = _run_reference(source, inputs, samples, chunk, sample_source)
    _check_renames(renames, inputs, list(reference))
    reference = {renames.get(k, k): v for k, v in reference.items()}
    onnx_model, report = _convert(source, inputs, renames, opset, native_rnn)
    _memory.release()  # the conversion's garbage (TensorFlow graphs, tf2onnx's copies) before onnxruntime's session
    onnx_model = _check_converted(onnx_model, source)

    feeds = {renames.get(k, k): v for k, v in samples.items()}
    figures = _parity_or_raise(onnx_model, feeds, reference, atol, stage="conversion", batch=chunk)
    steps: tuple[str, ...] = ()
    notes = list(source.notes)
    if simplify:
        from dlkit.core import graph_cleanup as cleanup

        try:
            cleaned, cleanup_steps = cleanup.simplify(_copy(onnx_model))
            _memory.release()
            figures = _parity_or_raise(cleaned, feeds, reference, atol, stage="cleanup", batch=chunk)
            onnx_model, steps = cleaned, tuple(cleanup_steps)
        except ToleranceError as err:
            notes.append(f"graph cleanup was undone: {err}")
        except MissingDependencyError:
            raise
        except Exception as err:  # a fold meeting a graph it does not know costs speed, never the export
            notes.append(f"graph cleanup was undone: {type(err).__name__}: {(str(err).splitlines() or [''])[0]}")

    _memory.release()  # the unsimplified copy and the parity sessions
    onnx_model = _finish(onnx_model, source, figures, label_list, preprocessing, inputs, renames, atol)
    label_check = _check_labels(label_list, onnx_model)
    if label_check:
        raise InvalidInputError(label_check)
    _files.write_atomic(out_path, onnx_model.SerializeToString())
    return ExportResult(
        path=str(out_path),
        source=source.description,
        inputs=sessions.graph_tensors(onnx_model.graph.input),
        outputs=sessions.graph_tensors(onnx_model.graph.output),
        opset=opset,
        parity=figures,
        atol=atol,
        num_samples=count,
        sample_source=sample_source,
        native_recurrent=tuple(report.native),
        generic_recurrent=dict(report.generic),
        cleanup=steps,
        size_bytes=out_path.stat().st_size,
        seconds=round(time.perf_counter() - started, 3),
        notes=tuple(notes),
    )


def _check_opset(opset: int) -> int:
    constants = _deps.require("tf2onnx", "dlkit export").constants
    highest = max(constants.OPSET_TO_IR_VERSION)
    if not isinstance(opset, int) or not 13 <= opset <= highest:
        raise InvalidInputError(f"opset {opset} is not supported; choose one from 13 to {highest} (default {DEFAULT_OPSET})")
    return highest


def _read_labels(labels: Any) -> list[str] | None:
    if labels is None:
        return None
    if isinstance(labels, (str, os.PathLike)):
        path = Path(labels)
        if not path.is_file():
            raise InvalidInputError(f"labels file '{path}' does not exist; give a text file with one label per line")
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [str(label) for label in labels]


def _check_labels(labels: list[str] | None, model: Any) -> str | None:
    if not labels:
        return None
    widths = {o.name: o.type.tensor_type.shape.dim[-1].dim_value for o in model.graph.output if o.type.tensor_type.shape.dim}
    if len(labels) not in widths.values():
        return f"{len(labels)} labels given but the outputs have {widths} classes; give one label per class"
    return None


def _samples(sample_data, inputs, num_samples, source, seed) -> tuple[dict[str, np.ndarray], str]:
    if num_samples < 1:
        raise InvalidInputError(f"num_samples must be >= 1, got {num_samples}")
    if sample_data is None:
        return parity.random_inputs(inputs, num_samples, int_high=_token_range(source), seed=seed), "random"
    if isinstance(sample_data, Mapping):
        if len(inputs) == 1 and len(sample_data) == 1:  # one array for one input: the name need not match
            sample_data = {inputs[0].name: next(iter(sample_data.values()))}
        arrays = {i.name: parity.fit_array(np.asarray(sample_data[i.name]), i, source="sample_data")[:num_samples]
                  for i in inputs if i.name in sample_data}
        missing = [i.name for i in inputs if i.name not in arrays]
        if missing:
            raise InvalidInputError(f"sample_data has no array for inputs {missing}; key it by input name")
        return arrays, "sample_data"
    from dlkit.core.datasources import open_data

    return open_data(sample_data, inputs, what="sample data").take(0, num_samples), str(sample_data)


def _token_range(source) -> int:
    """Random token ids stay below the smallest Embedding's vocabulary."""
    if source.keras_model is None:
        return 10
    import keras

    sizes = [layer.input_dim for layer in source.keras_model._flatten_layers(include_self=False)
             if isinstance(layer, keras.layers.Embedding)]
    return min(sizes, default=10)


def _whole_batches(samples: dict[str, np.ndarray], batch_size: int | None) -> dict[str, np.ndarray]:
    """With a fixed batch, the samples cut (or repeated) to a whole number of batches."""
    if not batch_size:
        return samples
    count = len(next(iter(samples.values())))
    keep = max(batch_size, count - count % batch_size)
    return {k: np.resize(v, (keep, *v.shape[1:])) if keep > count else v[:keep] for k, v in samples.items()}


def _run_reference(source, inputs, samples, chunk, sample_source) -> dict[str, np.ndarray]:
    import tensorflow as tf

    parts: dict[str, list] = {}
    for batch in sessions.batches(samples, chunk):
        try:
            out = source.call(*[tf.constant(batch[i.name]) for i in inputs])
        except Exception as err:  # Keras' own verdict on the sample's shapes or values
            raise InvalidInputError(
                f"Keras could not run {source.description} on the {sample_source} samples of shape(s) "
                f"{[tuple(batch[i.name].shape) for i in inputs]} ({type(err).__name__}: {_one_line(err)}); give "
                "--input with the sizes the model takes, or --sample-data") from err
        for name, value in out.items():
            parts.setdefault(name, []).append(np.asarray(value))
    return {k: np.concatenate(v) for k, v in parts.items()}


def _check_renames(renames: Mapping[str, str], inputs, outputs: Sequence[str]) -> None:
    """Each OLD names an input or output; no two inputs or outputs end up with one name."""
    if not renames:
        return
    input_names = [i.name for i in inputs]
    unknown = [old for old in renames if old not in input_names and old not in outputs]
    if unknown:
        raise InvalidInputError(f"--rename names {unknown}, which the model does not have; its inputs are "
                                f"{input_names} and its outputs {list(outputs)}")
    for kind, names in (("inputs", input_names), ("outputs", list(outputs))):
        renamed = [renames.get(n, n) for n in names]
        if len(set(renamed)) != len(renamed):
            raise InvalidInputError(f"--rename gives two {kind} one name ({renamed}); choose unused names")


def _one_line(err: Exception) -> str:
    """An exception's text as one plain line: no ANSI colours, no line breaks, at most 300 characters."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    return " ".join(text.split())[:300]


def _convert(source, inputs, renames, opset, native_rnn):
    import tensorflow as tf

    from dlkit.exporting import _tf2onnx_compat

    specs = [tf.TensorSpec(_tf_shape(i.shape), tf.as_dtype(i.dtype), name=renames.get(i.name, i.name)) for i in inputs]

    def fn(*args):
        return {renames.get(k, k): v for k, v in source.call(*args).items()}

    report = _tf2onnx_compat.RecurrentReport()
    _quiet_tf2onnx()
    try:
        model = _tf2onnx_compat.convert(fn, specs, opset=opset, keras_model=source.keras_model,
                                        native_rnn=native_rnn, report=report)
    except Exception as err:  # tf2onnx raises bare exceptions with its own text
        hint = ""
        if "is not a valid scope name" in str(err):
            hint = "; rename the layers or the model without spaces or slashes (TensorFlow scope names)"
        raise ConversionError(f"{source.description} could not be converted: {type(err).__name__}: "
                              f"{_one_line(err)}{hint}") from err
    return model, report


def _tf_shape(shape) -> list:
    return [d if isinstance(d, int) else None for d in shape]


def _quiet_tf2onnx() -> None:
    import logging

    for name in ("tf2onnx", "tensorflow"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _check_converted(model: Any, source) -> Any:
    """No TensorFlow op left unconverted (tf2onnx keeps them and goes on); shapes inferred; the checker passes."""
    import onnx

    for node in model.graph.node:
        if not onnx.defs.has(node.op_type, node.domain or ""):
            layer = node.name.rsplit("/", 1)[0] if "/" in node.name else node.name
            raise ConversionError(
                f"layer '{layer}' of {source.description} uses TensorFlow op {node.op_type}, which has no ONNX "
                "conversion; rewrite that layer with standard Keras ops"
            )
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        onnx.checker.check_model(model, full_check=True)
    except Exception as err:
        raise ConversionError(f"the converted model fails onnx.checker: {str(err).splitlines()[0]}") from err
    return model


def _parity_or_raise(model, feeds, reference, atol, *, stage, batch=sessions.BATCH) -> tuple[OutputParity, ...]:
    extra = [i.name for i in sessions.graph_inputs(model) if i.name not in feeds]
    if extra:
        raise ConversionError(f"after {stage}, the ONNX graph wants inputs the model does not have ({extra}): tf2onnx "
                              "made tensors captured by a layer into inputs (a Normalization layer's mean and variance,"
                              " for one); fold them into weights, or export the model without that layer")
    try:
        got = sessions.run(model, feeds, batch=batch)
    except InvalidInputError as err:
        raise ConversionError(f"after {stage}, the ONNX model does not run in onnxruntime: {err}") from err
    figures = parity.compare(reference, got)
    worst = max(figures, key=lambda p: p.max_abs_error)
    if not worst.max_abs_error <= atol:  # also catches NaN
        raise ToleranceError(
            f"after {stage}, output '{worst.name}' differs from Keras by {worst.max_abs_error:.3g} "
            f"(max abs error) > atol {atol:g}; no file was written"
        )
    return figures


def _copy(model: Any) -> Any:
    import onnx

    clone = onnx.ModelProto()
    clone.CopyFrom(model)
    return clone


def _finish(model, source, figures, labels, preprocessing, inputs, renames, atol):
    """Shape inference, readable dynamic axes, and dlkit's metadata."""
    import onnx

    import dlkit

    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "N"
    model.producer_name = "dlkit"
    model.producer_version = dlkit.__version__
    layouts = {renames.get(i.name, i.name): _layout(i) for i in inputs}
    meta = {
        "dlkit.version": dlkit.__version__,
        "dlkit.framework": source.framework,
        "dlkit.source": source.description,
        "dlkit.input_layout": json.dumps(layouts),
        "dlkit.parity": json.dumps({"atol": atol, "outputs": [p.to_dict() for p in figures]}),
    }
    if labels:
        meta["dlkit.labels"] = json.dumps(labels)
    if preprocessing:
        meta["dlkit.preprocessing"] = json.dumps(preprocessing)
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model, full_check=True)  # the file as written, after cleanup
    return model


def _layout(info: TensorInfo) -> str:
    """A hint of what the axes mean: images from Keras are channels-last."""
    if np.dtype(info.dtype).kind in "iu" and len(info.shape) == 2:
        return "NT (token ids)"
    return {2: "NC", 3: "NTC", 4: "NHWC", 5: "NDHWC"}.get(len(info.shape), "N...")
