"""The finished ONNX file of `dlkit.export`: shapes inferred, a readable batch axis, and dlkit's metadata."""

from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np

from dlkit.core import metadata, sessions
from dlkit.core.tensors import TensorInfo
from dlkit.errors import InvalidInputError
from dlkit.exporting.options import ExportPlan
from dlkit.exporting.output_kinds import output_kinds


def finish_model(model: Any, source, parity: Sequence, plan: ExportPlan, inputs: Sequence[TensorInfo]) -> Any:
    """Shape inference, readable dynamic axes, and dlkit's metadata; the labels checked against the outputs.

    Raises:
        InvalidInputError: the number of labels is not the number of classes of any output.
    """
    import onnx

    import dlkit

    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "N"
    metadata.stamp(model, _metadata(model, source, parity, plan, inputs, dlkit.__version__))
    onnx.checker.check_model(model, full_check=True)  # the file as written, after cleanup
    _check_labels(plan.labels, model)
    return model


def _metadata(model: Any, source, parity: Sequence, plan: ExportPlan, inputs: Sequence[TensorInfo], version: str) -> dict[str, str]:
    renames = plan.renames
    layouts = {renames.get(i.name, i.name): _layout(i) for i in inputs}
    meta = {
        "dlkit.version": version,
        "dlkit.framework": source.framework,
        "dlkit.source": source.description,
        "dlkit.input_layout": json.dumps(layouts),
        "dlkit.parity": json.dumps({"atol": plan.atol, "outputs": [p.to_dict() for p in parity]}),
    }
    kinds = output_kinds(model)
    if kinds:
        meta["dlkit.output_kinds"] = json.dumps(kinds)
    if plan.labels:
        meta["dlkit.labels"] = json.dumps(plan.labels)
    preprocessing = plan.preprocessing or in_model_preprocessing(source.keras_model)
    if preprocessing:
        meta["dlkit.preprocessing"] = json.dumps(preprocessing)
    audio = in_model_audio(source.keras_model, sessions.graph_inputs(model))
    if audio:
        meta["dlkit.audio"] = json.dumps(audio)
    return meta


def in_model_audio(keras_model: Any, graph_inputs: Sequence[TensorInfo]) -> dict[str, int] | None:
    """`{"sample_rate": 16000, "samples": 16000}` for a one-input model that computes a spectrogram of its raw
    audio in the model (`keras.layers.MelSpectrogram`, whose config holds the rate; `STFTSpectrogram`, which has
    none), for the runtime to read a `.wav` for it (dlkit_runtime.audio); the length from the input's fixed shape."""
    if len(getattr(keras_model, "inputs", None) or []) != 1 or len(graph_inputs) != 1:
        return None
    kinds = ("MelSpectrogram", "STFTSpectrogram")
    layer = next((la for la in keras_model._flatten_layers(include_self=False) if type(la).__name__ in kinds), None)
    if layer is None:
        return None
    audio = {}
    if type(layer).__name__ == "MelSpectrogram":
        audio["sample_rate"] = int(layer.sampling_rate)
    shape = graph_inputs[0].shape
    if len(shape) >= 2 and isinstance(shape[1], int):
        audio["samples"] = shape[1]
    return audio


# Keras layers that prepare an image inside the model (the random augmentations are identities at inference)
_PREPARING = ("Rescaling", "Normalization", "Resizing", "CenterCrop")
_AUGMENTING = ("RandomFlip", "RandomRotation", "RandomZoom", "RandomContrast", "RandomTranslation",
               "RandomBrightness", "RandomCrop")


def in_model_preprocessing(keras_model: Any) -> dict[str, Any] | None:
    """`{"in_model": ["Resizing(96x96)", "Rescaling(x0.00784314, -1)"]}` when a one-input model starts with Keras'
    preprocessing layers: it takes raw pixels and prepares them itself, so the runtime feeds images as decoded
    (no scaling) and says nothing. None when the model does not start so, or is not a Keras model."""
    layers = [layer for layer in getattr(keras_model, "layers", None) or []
              if type(layer).__name__ != "InputLayer"]
    if len(getattr(keras_model, "inputs", None) or []) != 1:
        return None
    found = []
    for layer in layers:
        kind = type(layer).__name__
        if kind in _AUGMENTING:
            continue
        if kind not in _PREPARING:
            break
        found.append(_describe(layer, kind))
    return {"in_model": found} if found else None


def _describe(layer: Any, kind: str) -> str:
    config = layer.get_config()
    if kind == "Rescaling":
        scale, offset = config.get("scale"), config.get("offset")
        return f"Rescaling(x{scale:.6g}, {offset:+g})" if isinstance(scale, (int, float)) and \
            isinstance(offset, (int, float)) else "Rescaling"
    if kind in ("Resizing", "CenterCrop"):
        return f"{kind}({config.get('height')}x{config.get('width')})"
    return kind


def _check_labels(labels: list[str] | None, model: Any) -> None:
    if not labels:
        return
    widths = {o.name: o.type.tensor_type.shape.dim[-1].dim_value for o in model.graph.output if o.type.tensor_type.shape.dim}
    if len(labels) not in widths.values():
        raise InvalidInputError(f"{len(labels)} labels given but the outputs have {widths} classes; give one label per class")


def _layout(info: TensorInfo) -> str:
    """A hint of what the axes mean: images from Keras are channels-last."""
    if np.dtype(info.dtype).kind in "iu" and len(info.shape) == 2:
        return "NT (token ids)"
    return {2: "NC", 3: "NTC", 4: "NHWC", 5: "NDHWC"}.get(len(info.shape), "N...")
