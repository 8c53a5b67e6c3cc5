"""Workarounds for tf2onnx on Keras 3, applied in one place.

1. `tf2onnx.convert.from_keras` raises `KeyError: 'keras_tensor_N'` on Keras 3 models
   (onnx/tensorflow-onnx#2448, #2319; fixes proposed in #2477 and #2487, unmerged). We convert a
   `tf.function` with an explicit input signature through `from_function` instead, as Keras's own
   `export_onnx` does. Delete nothing here when that lands: `from_function` stays the better path.
2. tf2onnx matches Keras 2's GRU/LSTM while-loop patterns (onnx/tensorflow-onnx#1684, #1546), not Keras 3's,
   so a Keras 3 GRU or LSTM becomes a generic `Loop`: slow, and rejected by onnxruntime's `quantize_dynamic`.
   While the model is traced, each supported recurrent layer's `inner_loop` is swapped for a placeholder op
   (`tf.numpy_function`, a `PyFunc` that is never run); a tf2onnx custom-op handler then emits the native
   ONNX `GRU` / `LSTM` op with the layer's weights; a `go_backwards` layer (the backward half of a
   `Bidirectional`) becomes the op's reverse direction. Layers whose semantics the native ops do not share
   (masking, stateful, other activations) keep Keras's loop. Delete this half when tf2onnx's rewriters match
   Keras 3's loop.
3. tf2onnx makes every tensor a traced function captures into a graph input, and only variables are frozen: a
   `Normalization` layer's mean and variance (plain tensors in Keras 3) became inputs the model does not have.
   The captured constants are folded back as initializers (`_fold_captured_constants`).
4. Keras 3's TensorFlow backend runs grouped convolutions (`Conv2D(groups=g)`, ConvNeXt's depthwise 7x7) in a
   nested `tf.function(jit_compile=True)`, because TensorFlow's CPU kernel lacks them; tf2onnx leaves that call
   unconverted. While tracing for export, they are plain `Conv2D` ops again, which tf2onnx converts to ONNX
   `Conv` with `group` (`plain_grouped_convolutions`).
5. tf2onnx has no conversion for TensorFlow's `Erfc`, which the exact GELU of Keras 3 uses (ConvNeXt): it becomes
   `1 - Erf(x)` (`erfc_handler`).
6. tf2onnx converts TensorFlow's `RFFT` only when `ComplexAbs` reads it, and has no conversion for `Real` and `Imag`
   ("... only allows ComplexAbs as consumer not {'Real', 'Imag'}", onnx/tensorflow-onnx#2155, open; the DFT-17
   conversion of #2417 is not in tf2onnx 1.17); its `ComplexAbs` takes only a 2-D RFFT (#2340, open). Keras 3's
   `keras.ops.stft`, under `keras.layers.MelSpectrogram`, reads the real and imaginary parts apart: such an `RFFT`
   becomes one `MatMul` with a constant real-DFT matrix, and `Real` / `Imag` / `ComplexAbs` slices of it
   (`spectral`). Delete it when tf2onnx converts them for any rank.
7. tf2onnx's optimizer merges `Reshape(Reshape(x, s1), s2)` into `Reshape(x, s2)` even where `s2` holds a `0`, which
   in ONNX copies an axis of the Reshape's input and so, after the merge, of `x` (its own `ReshapeOptimizer` writes
   such `0`s). KerasHub's MiT / SegFormer attention with one head became a graph onnxruntime refused ("cannot
   broadcast on dim 0"). Such pairs stay apart (`reshapes`); delete it when tf2onnx checks for the `0`s.
8. Keras 3's `keras.ops.argmax` / `argmin` on floats read the sign bit through `tf.bitcast`, which tf2onnx cannot
   convert; while tracing, `signbit` is made of comparisons (`signbit`).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import numpy as np

from dlkit.exporting._tf2onnx_compat import spectral
from dlkit.exporting._tf2onnx_compat.reshapes import safe_reshape_merging
from dlkit.exporting._tf2onnx_compat.signbit import bitcast_free_signbit
from dlkit.exporting._tf2onnx_compat.recurrent import (PLACEHOLDERS, RecurrentReport, recurrent_layers,
                                                       RecurrentPlan, unused_rnn_outputs, native_recurrent_layers,
                                                       recurrent_handler)
from dlkit.exporting.memory import collected_tf2onnx_passes

__all__ = ["RecurrentReport", "convert"]


def convert(
    fn: Callable,
    specs: list,
    *,
    opset: int,
    keras_model: Any | None,
    native_rnn: bool,
    report: RecurrentReport,
) -> Any:
    """Traces `fn` (positional tensors -> dict of named outputs) and converts it with tf2onnx.

    Returns:
        The ONNX ModelProto.
    """
    import tensorflow as tf
    import tf2onnx

    with contextlib.ExitStack() as stack:
        plans: dict[str, RecurrentPlan] = {}
        if native_rnn and keras_model is not None:
            plans = stack.enter_context(native_recurrent_layers(keras_model, report))
        elif keras_model is not None:
            for layer in recurrent_layers(keras_model):
                report.generic[layer.name] = "native recurrent export turned off"
        stack.enter_context(plain_grouped_convolutions())
        stack.enter_context(safe_reshape_merging())
        stack.enter_context(bitcast_free_signbit())
        stack.enter_context(collected_tf2onnx_passes())  # its garbage copies of the weights, freed
        traced = tf.function(fn, input_signature=specs, autograph=False)
        handler = recurrent_handler(plans)
        # The handler reads `plans` when tf2onnx calls it, after the trace inside from_function filled it.
        handlers = {op: (handler, []) for op in PLACEHOLDERS}
        handlers["Erfc"] = (erfc_handler, [])
        handlers.update(spectral.handlers())
        model_proto, _ = tf2onnx.convert.from_function(
            traced, input_signature=specs, opset=opset, custom_op_handlers=handlers
        )
        _fold_captured_constants(model_proto, traced.get_concrete_function())  # the trace tf2onnx converted
    unused_rnn_outputs(model_proto)
    return model_proto


def erfc_handler(ctx, node, name, args):  # noqa: ARG001 (tf2onnx's signature)
    """TensorFlow's `Erfc` (in the exact GELU of Keras 3: ConvNeXt, transformers) as ONNX `1 - Erf(x)`, which
    tf2onnx has no conversion for."""
    from tf2onnx import utils

    x, (out,) = node.input[0], node.output
    dtype, shape = ctx.get_dtype(out), ctx.get_shape(out)
    ctx.remove_node(node.name)
    erf = ctx.make_node("Erf", [x]).output[0]
    one = ctx.make_const(utils.make_name(f"{node.name}_one"),
                         np.array(1, dtype=utils.map_onnx_to_numpy_type(dtype))).output[0]
    ctx.make_node("Sub", [one, erf], outputs=[out], shapes=[shape], dtypes=[dtype])


def _fold_captured_constants(model: Any, concrete: Any) -> list[str]:
    """The graph inputs tf2onnx made of tensors the function captured (not variables: those it froze) become
    initializers holding the captured values. Returns their names."""
    import tensorflow as tf
    from onnx import numpy_helper

    captured = list(concrete.captured_inputs)
    placeholders = list(concrete.graph.inputs)[len(concrete.graph.inputs) - len(captured):] if captured else []
    values = {p.name: c for p, c in zip(placeholders, captured) if c.dtype != tf.resource}
    folded = []
    for value in list(model.graph.input):
        name = value.name if value.name in values else f"{value.name}:0"
        tensor = values.get(name)
        if tensor is None:
            continue
        model.graph.input.remove(value)
        model.graph.initializer.append(numpy_helper.from_array(np.asarray(tensor.numpy()), value.name))
        folded.append(value.name)
    return folded


@contextlib.contextmanager
def plain_grouped_convolutions() -> Iterator[None]:
    """While active, Keras's TensorFlow `conv` traces a grouped convolution as a plain `Conv2D` (whose kernel's
    input channels are the input's divided by the groups) instead of an XLA-compiled call. The graph is only
    converted, never run by TensorFlow, so its CPU kernel's missing grouped convolutions do not matter."""
    import tensorflow as tf
    from keras.src.backend.tensorflow import nn

    original = nn.conv

    def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
        if not tf.inside_function() or len(inputs.shape) == 5:
            return original(inputs, kernel, strides, padding, data_format, dilation_rate)
        return tf.nn.convolution(inputs, kernel, strides, padding.upper(),
                                 data_format=nn._convert_data_format(data_format, len(inputs.shape)),
                                 dilations=dilation_rate)

    nn.conv = conv
    try:
        yield
    finally:
        nn.conv = original
