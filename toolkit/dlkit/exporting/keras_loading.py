"""Loading what `dlkit export` reads: a `.keras` file, a legacy `.h5` file, a SavedModel folder or a Keras model.

Everything becomes a `ModelSource`: its inputs, and one callable from positional tensors to a dict of named
outputs that serves both for tracing (tf2onnx) and for the reference run (the parity check).
"""

from __future__ import annotations

import inspect
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from dlkit.core import dependencies as _deps
from dlkit.errors import ConversionError, InvalidInputError, UnsafeModelError
from dlkit.core.tensors import TensorInfo

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_NOT_INPUTS = {"self", "training", "mask", "kwargs", "args"}


@dataclass
class ModelSource:
    """A model ready to trace and to run.

    Attributes:
        description: what it is, for messages ("cnn.keras (Sequential)").
        inputs: the inputs, in the order `call` takes them.
        call: positional tensors -> {output name: tensor}.
        keras_model: the Keras model, when there is one (a SavedModel has none).
        framework: e.g. "keras 3.15.1 / tensorflow 2.21.0".
        notes: things the user should know (an optional argument left out, ...).
        text: for a text model, the TextVectorization moved out of the graph (`text_vectorization.TextFront`).
    """

    description: str
    inputs: tuple[TensorInfo, ...]
    call: Callable[..., dict]
    keras_model: Any
    framework: str
    notes: tuple[str, ...] = ()
    text: Any = None


def load(
    model: Any,
    *,
    safe_mode: bool = True,
    custom_objects: dict | None = None,
    input_specs: tuple[TensorInfo, ...] = (),
) -> ModelSource:
    """Loads `model` (a path or a Keras model) and describes how to call it.

    Raises:
        InvalidInputError: the path is missing or is not a model dlkit reads.
        UnsafeModelError: the file needs unsafe deserialization and `safe_mode` is on.
        MissingDependencyError: TensorFlow or Keras is not installed.
    """
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        kind = _check_model_path(path)
        tf = _deps.require("tensorflow", "dlkit export")
        if kind == "savedmodel":
            return _savedmodel_source(tf, path, input_specs)
        keras_model = _load_keras_file(path, safe_mode=safe_mode, custom_objects=custom_objects)
        label = path.name
    else:
        _deps.require("tensorflow", "dlkit export")
        keras = _deps.require("keras", "dlkit export")
        if not isinstance(model, keras.Model):
            raise InvalidInputError(
                f"dlkit export takes a keras.Model or a path, got {type(model).__name__}; pass the model or its file"
            )
        keras_model = model
        label = keras_model.name
    return _keras_source(keras_model, label, input_specs)


def _check_model_path(path: Path) -> str:
    if not path.exists():
        raise InvalidInputError(f"model path '{path}' does not exist; check the path")
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise InvalidInputError(
                f"folder '{path}' is not a TensorFlow SavedModel (it has no saved_model.pb); "
                "give a SavedModel folder, a .keras or an .h5 file"
            )
        return "savedmodel"
    suffix = path.suffix.lower()
    if suffix == ".keras":
        if not zipfile.is_zipfile(path):
            raise InvalidInputError(
                f"'{path}' is not a valid .keras file (not a zip archive: truncated or another format); "
                "save it again with model.save()"
            )
        return "keras"
    if suffix in (".h5", ".hdf5"):
        with open(path, "rb") as f:
            if f.read(8) != _HDF5_SIGNATURE:
                raise InvalidInputError(f"'{path}' is not an HDF5 file (truncated or another format); save it again")
        return "h5"
    raise InvalidInputError(
        f"'{path}' is not a model dlkit reads (suffix {suffix or 'none'!r}); give a .keras or .h5 file "
        "or a SavedModel folder"
    )


def _load_keras_file(path: Path, *, safe_mode: bool, custom_objects: dict | None) -> Any:
    keras = _deps.require("keras", "dlkit export")
    try:
        return keras.saving.load_model(path, custom_objects=custom_objects, compile=False, safe_mode=safe_mode)
    except Exception as err:  # Keras raises ValueError/TypeError/OSError/KeyError with its own text
        text = str(err)
        if "safe_mode" in text or "unsafe" in text.lower() and "lambda" in text.lower():
            raise UnsafeModelError(
                f"'{path}' holds a Lambda layer whose Python code needs unsafe deserialization; if you trust the "
                "file, re-run with --no-safe-mode (safe_mode=False)"
            ) from err
        if "Could not locate" in text or "Unknown layer" in text or "custom_objects" in text:
            name = text.split("'")[1] if text.count("'") >= 2 else "a custom class"
            if path.suffix.lower() != ".keras" and _is_keras_op(name):
                raise InvalidInputError(
                    f"'{path}' uses keras.ops '{name}' outside a layer, which Keras cannot load back from the "
                    "legacy .h5 format; save the model as .keras (model.save('model.keras'))"
                ) from err
            raise InvalidInputError(
                f"'{path}' uses {name}, which is not registered; pass --custom-objects FILE.py "
                "(a module that defines it with @keras.saving.register_keras_serializable)"
            ) from err
        raise InvalidInputError(
            f"'{path}' could not be loaded as a Keras model ({type(err).__name__}: {text.splitlines()[0][:200]}); "
            "check that the file is complete and was saved by Keras"
        ) from err


def _is_keras_op(name: str) -> bool:
    """Whether `name` is the class Keras gives a `keras.ops` call in a functional model (Argmax, Cast, ...)."""
    from keras.src import ops

    return any(isinstance(getattr(module, name, None), type) for module in (ops.numpy, ops.core, ops.math, ops.nn))


def _framework() -> str:
    import keras
    import tensorflow as tf

    return f"keras {keras.__version__} / tensorflow {tf.__version__}"


def _keras_source(model: Any, label: str, input_specs: tuple[TensorInfo, ...]) -> ModelSource:
    import keras

    if not model.built:
        raise InvalidInputError(f"model {model.name} has never been built or called; call it once on real inputs first")
    given = {spec.name: spec for spec in input_specs}
    notes: list[str] = []
    if isinstance(model, keras.Sequential) or getattr(model, "_is_graph_network", False) or _is_functional(model):
        tensors = keras.tree.flatten(model.inputs)
        infos = [
            given.get(t.name) or TensorInfo(t.name, keras.backend.standardize_dtype(t.dtype), (None, *t.shape[1:]))
            for t in tensors
        ]
        structure = model.input if _is_functional(model) and not isinstance(model, keras.Sequential) else None
        kind = type(model).__name__

        def call(*args):
            if structure is not None:
                packed = keras.tree.pack_sequence_as(structure, list(args))
            else:
                packed = args[0] if len(args) == 1 else list(args)
            return _named_outputs(model, model(packed, training=False))
    else:
        infos, skipped, keyed = _subclassed_inputs(model, given)
        kind = f"subclassed {type(model).__name__}"
        notes += [
            f"optional call argument '{name}' is not an input of the export (it keeps its default); "
            f"give --input '{name}:DTYPE[...]' to export it" for name in skipped
        ]
        names = [info.name for info in infos]

        def call(*args):
            kwargs = dict(zip(names, args))
            if keyed:  # the first argument is a dict of named tensors, as Keras recorded it
                kwargs = {keyed[0]: {k: kwargs.pop(k) for k in keyed[1]}, **kwargs}
            return _named_outputs(model, model(**kwargs, training=False))

    unknown = set(given) - {info.name for info in infos}
    if unknown:
        raise InvalidInputError(
            f"--input names {sorted(unknown)}, which model {model.name} does not take; "
            f"its inputs are {[info.name for info in infos]}"
        )
    return ModelSource(f"{label} ({kind})", tuple(infos), call, model, _framework(), tuple(notes))


def _is_functional(model: Any) -> bool:
    from keras.src.models.functional import Functional

    return isinstance(model, Functional) or getattr(model, "_functional", None) is not None


def _subclassed_inputs(model: Any, given: dict[str, TensorInfo]) -> tuple[list[TensorInfo], list[str], tuple]:
    """Inputs of a subclassed model: its call arguments; shapes from Keras's build record or from --input.
    A first argument Keras recorded as a dict of shapes gives one input per key; `keyed` is then
    (the argument's name, its keys), else ()."""
    import keras

    params = [
        p for p in inspect.signature(model.call).parameters.values()
        if p.name not in _NOT_INPUTS and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    recorded = list((getattr(model, "_build_shapes_dict", None) or {}).values())
    infos, skipped, keyed = [], [], ()
    for index, param in enumerate(params):
        if param.name in given:
            infos.append(given[param.name])
        elif index == 0 and recorded and isinstance(recorded[0], dict):
            shapes = {str(k): v for k, v in recorded[0].items() if isinstance(v, (tuple, list))}
            infos += [given.get(k) or TensorInfo(k, str(model.input_dtype), (None, *v[1:])) for k, v in shapes.items()]
            keyed = (param.name, tuple(shapes))
        elif index == 0 and recorded and isinstance(recorded[0], (tuple, list)):
            # Keras records the first argument's shape only; an Embedding first means token ids.
            first = next(iter(model._flatten_layers(include_self=False, recursive=False)), None)
            dtype = "int32" if isinstance(first, keras.layers.Embedding) else str(model.input_dtype)
            infos.append(TensorInfo(param.name, dtype, (None, *recorded[0][1:])))
        elif param.default is not inspect.Parameter.empty:
            skipped.append(param.name)
        else:
            raise InvalidInputError(
                f"model {model.name} takes '{param.name}' but Keras recorded no shape for it; "
                f"give --input '{param.name}:DTYPE[N,...]' (input_specs=...)"
            )
    return infos, skipped, keyed


def _named_outputs(model: Any, out: Any) -> dict:
    import keras

    if isinstance(out, dict):  # a nested value's tensors are named by their path: {"pair": (a, b)} -> pair_0, pair_1
        named = {}
        for key, value in out.items():
            nested = keras.tree.flatten_with_path(value) if isinstance(value, (dict, list, tuple)) else [((), value)]
            named.update({"_".join(map(str, (key, *path))): tensor for path, tensor in nested})
        return named
    flat = keras.tree.flatten(out)
    names = getattr(model, "output_names", None)
    functional = getattr(model, "_functional", None)
    if not names and functional is not None:
        names = functional.output_names
    if not names or len(names) != len(flat) or len(set(names)) != len(names):
        names = [f"output_{i}" for i in range(len(flat))]
    return dict(zip(names, flat))


def _savedmodel_source(tf: Any, path: Path, input_specs: tuple[TensorInfo, ...]) -> ModelSource:
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as err:
        raise InvalidInputError(f"SavedModel '{path}' could not be loaded ({type(err).__name__}); save it again") from err
    signatures = dict(loaded.signatures)
    if not signatures:
        raise InvalidInputError(f"SavedModel '{path}' has no signatures; export it with model.export(path)")
    signature = signatures.get("serving_default") or next(iter(signatures.values()))
    _, kwargs = signature.structured_input_signature
    given = {spec.name: spec for spec in input_specs}
    infos = tuple(
        given.get(name) or TensorInfo(name, spec.dtype.as_numpy_dtype.__name__, tuple(spec.shape.as_list()))
        for name, spec in kwargs.items()
    )
    names = [info.name for info in infos]
    if not names:
        raise ConversionError(f"SavedModel '{path}' signature takes no named inputs; dlkit cannot feed it")

    def call(*args, _keep_alive=loaded):  # the signature's variables live as long as `loaded` does
        out = signature(**dict(zip(names, args)))
        return {key: out[key] for key in sorted(out, key=_natural)}  # output_0, output_1, ..., output_10

    return ModelSource(
        f"{path.name} (SavedModel)", infos, call, None, f"tensorflow {tf.__version__}",
        ("a SavedModel has no Keras layers: GRU/LSTM keep the generic ONNX Loop",),
    )


def _natural(name: str) -> tuple[str, int]:
    stem = name.rstrip("0123456789")
    return stem, int(name[len(stem):] or -1)
