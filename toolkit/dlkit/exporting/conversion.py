"""The conversion proper: a loaded Keras model through tf2onnx to an ONNX model that onnx.checker accepts."""

from __future__ import annotations

from typing import Any

from dlkit.errors import ConversionError
from dlkit.exporting.memory import release as release_memory


def convert(source, inputs, renames, opset: int, native_rnn: bool) -> tuple[Any, Any]:
    """The ONNX model of `source` (inputs and outputs renamed), checked, and tf2onnx's `RecurrentReport`.

    Raises:
        ConversionError: tf2onnx fails, leaves a TensorFlow op in the graph, or writes a model onnx.checker rejects.
    """
    model, report = _convert(source, inputs, renames, opset, native_rnn)
    release_memory()  # the conversion's garbage (TensorFlow graphs, tf2onnx's copies) before onnxruntime's session
    return _check_converted(model, source), report


def one_line(err: Exception) -> str:
    """An exception's text as one plain line: no ANSI colours, no line breaks, at most 300 characters."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    return " ".join(text.split())[:300]


def _convert(source, inputs, renames, opset, native_rnn):
    import tensorflow as tf

    from dlkit.exporting._tf2onnx_compat import RecurrentReport, convert as tf2onnx_convert

    specs = [tf.TensorSpec(_tf_shape(i.shape), tf.as_dtype(i.dtype), name=renames.get(i.name, i.name)) for i in inputs]

    def fn(*args):
        return {renames.get(k, k): v for k, v in source.call(*args).items()}

    report = RecurrentReport()
    _quiet_tf2onnx()
    try:
        model = tf2onnx_convert(fn, specs, opset=opset, keras_model=source.keras_model,
                                native_rnn=native_rnn, report=report)
    except Exception as err:  # tf2onnx raises bare exceptions with its own text
        hint = ""
        if "is not a valid scope name" in str(err):
            hint = "; rename the layers or the model without spaces or slashes (TensorFlow scope names)"
        raise ConversionError(f"{source.description} could not be converted: {type(err).__name__}: "
                              f"{one_line(err)}{hint}") from err
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
