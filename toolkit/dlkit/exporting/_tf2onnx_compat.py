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
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from dlkit.exporting.memory import collected_tf2onnx_passes

# Keras activation name -> ONNX RNN activation name (the ones onnxruntime's GRU/LSTM kernels implement)
_ACTIVATIONS = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu"}
_PLACEHOLDERS = ("PyFunc", "PyFuncStateless")  # tf.numpy_function with stateful True / False


@dataclass
class _RecurrentPlan:
    """What the handler needs to emit one native ONNX GRU/LSTM for one Keras layer."""

    layer: str
    op_type: str  # "GRU" or "LSTM"
    units: int
    W: np.ndarray
    R: np.ndarray
    B: np.ndarray
    activations: list[str]
    linear_before_reset: int | None = None
    reverse: bool = False  # go_backwards: ONNX's reverse direction, its Y flipped into Keras's processing order


@dataclass
class RecurrentReport:
    """Which recurrent layers became native ONNX ops and which kept the generic loop, and why."""

    native: list[str] = field(default_factory=list)
    generic: dict[str, str] = field(default_factory=dict)  # layer name -> reason


def _activation_name(fn: Any) -> str | None:
    import keras

    try:
        name = keras.activations.serialize(fn)
    except Exception:  # an arbitrary callable
        return None
    if isinstance(name, dict):
        name = name.get("config", {}).get("name") or name.get("class_name")
    return _ACTIVATIONS.get(str(name))


def _plan(layer: Any) -> tuple[_RecurrentPlan | None, str | None]:
    """Decides whether `layer` can be a native ONNX op; returns the plan, or None and the reason."""
    import keras

    kind = type(layer).__name__
    if layer.stateful:
        return None, "stateful=True keeps state in variables between calls"
    if layer.compute_dtype != "float32":
        return None, f"compute dtype {layer.compute_dtype} (only float32 is exported natively)"
    act, rec = _activation_name(layer.activation), _activation_name(layer.recurrent_activation)
    if act is None or rec is None:
        return None, "activations other than sigmoid, tanh and relu"
    cell = layer.cell
    units = int(layer.units)
    kernel = keras.ops.convert_to_numpy(cell.kernel).astype(np.float32)
    recurrent = keras.ops.convert_to_numpy(cell.recurrent_kernel).astype(np.float32)
    bias = keras.ops.convert_to_numpy(cell.bias).astype(np.float32) if cell.use_bias else None
    if kind == "GRU":
        # Keras and ONNX both order the gates z, r, h; ONNX wants weights as (gates * units, in).
        if cell.reset_after:
            b = np.zeros((2, 3 * units), np.float32) if bias is None else bias.reshape(2, 3 * units)
            B = np.concatenate([b[0], b[1]])
        else:
            b = np.zeros(3 * units, np.float32) if bias is None else bias
            B = np.concatenate([b, np.zeros(3 * units, np.float32)])
        return _RecurrentPlan(
            layer.name, "GRU", units, kernel.T[None], recurrent.T[None], B[None], [rec, act],
            linear_before_reset=1 if cell.reset_after else 0, reverse=bool(layer.go_backwards),
        ), None
    # LSTM: Keras orders the gates i, f, c, o; ONNX i, o, f, c.
    order = np.concatenate([np.arange(g * units, (g + 1) * units) for g in (0, 3, 1, 2)])
    b = np.zeros(4 * units, np.float32) if bias is None else bias
    B = np.concatenate([b[order], np.zeros(4 * units, np.float32)])
    return _RecurrentPlan(
        layer.name, "LSTM", units, kernel.T[order][None], recurrent.T[order][None], B[None], [rec, act, act],
        reverse=bool(layer.go_backwards),
    ), None


def _never_run(*_args: Any) -> Any:
    raise RuntimeError("dlkit's recurrent placeholder exists only to be converted to ONNX, not to be run")


def _recurrent_layers(model: Any) -> list[Any]:
    import keras

    found = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if type(layer) in (keras.layers.GRU, keras.layers.LSTM):
            found.append(layer)
    return found


@contextlib.contextmanager
def native_recurrent_layers(model: Any, report: RecurrentReport) -> Iterator[dict[str, _RecurrentPlan]]:
    """While active, tracing `model` puts a placeholder op where each supported GRU/LSTM runs its loop.

    Yields the placeholder token -> plan table that `recurrent_handler` reads. The layers are restored on exit.
    """
    import tensorflow as tf

    plans: dict[str, _RecurrentPlan] = {}
    patched = []
    for layer in _recurrent_layers(model) if model is not None else []:
        plan, reason = _plan(layer)
        if plan is None:
            report.generic[layer.name] = reason
            continue
        original = layer.inner_loop

        def inner_loop(sequences, initial_state, mask, training=False, _plan=plan, _original=original):
            if mask is not None:
                report.generic[_plan.layer] = "masked input (ONNX sequence_lens zeroes padded steps; Keras repeats)"
                return _original(sequences, initial_state, mask, training=training)
            states = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
            n_out = 2 if _plan.op_type == "GRU" else 3
            outs = tf.numpy_function(
                _never_run, [sequences, *states], [tf.float32] * n_out, stateful=False, name="dlkit_native_rnn"
            )
            outs[0].set_shape([sequences.shape[0], sequences.shape[1], _plan.units])
            for state in outs[1:]:
                state.set_shape([sequences.shape[0], _plan.units])
            plans[outs[0].op.get_attr("token").decode()] = _plan
            if _plan.layer not in report.native:
                report.native.append(_plan.layer)
            return outs[1], outs[0], list(outs[1:])

        layer.inner_loop = inner_loop
        patched.append(layer)
    try:
        yield plans
    finally:
        for layer in patched:
            del layer.inner_loop  # the instance attribute; the class method shows through again


def recurrent_handler(plans: dict[str, _RecurrentPlan]) -> Callable:
    """A tf2onnx custom-op handler (old style: `func(ctx, node, name, args)`) that turns a placeholder into GRU/LSTM."""

    def handler(ctx, node, name, args):  # noqa: ARG001 (tf2onnx's signature)
        from tf2onnx import utils
        from tf2onnx.graph_builder import GraphBuilder

        token = node.get_attr_str("token")
        plan = plans.get(token)
        if plan is None:
            raise ValueError(f"op {node.name} is a tf.numpy_function, which ONNX cannot express")
        builder = GraphBuilder(ctx)
        x, *states = node.input
        outputs = list(node.output)
        x_shape = ctx.get_shape(x) or [-1, -1, -1]
        shapes = [[x_shape[0], x_shape[1], plan.units]] + [[x_shape[0], plan.units]] * (len(outputs) - 1)
        used = [bool(ctx.find_output_consumers(o)) or o in ctx.outputs for o in outputs]
        ctx.remove_node(node.name)

        base = utils.make_name(f"{plan.layer}_{plan.op_type.lower()}")
        x_tbf = ctx.make_node("Transpose", [x], attr={"perm": [1, 0, 2]}).output[0]
        weights = [ctx.make_const(f"{base}_{k}", v).output[0] for k, v in (("W", plan.W), ("R", plan.R), ("B", plan.B))]
        initial = [builder.make_unsqueeze({"data": s, "axes": [0]}) for s in states]
        attr = {"hidden_size": plan.units, "activations": plan.activations,
                "direction": "reverse" if plan.reverse else "forward"}
        if plan.linear_before_reset is not None:
            attr["linear_before_reset"] = plan.linear_before_reset
        n_out = len(outputs)
        # Y gets a name even when unused: tf2onnx keys outputs by name, so two layers' "" would collide;
        # `_unused_rnn_outputs` blanks it again in the finished model
        rnn_outputs = [f"{base}_Y"] + [f"{base}_Y{k}" for k in ("h", "c")[: n_out - 1]]
        ctx.make_node(plan.op_type, [x_tbf, *weights, "", *initial], attr=attr, outputs=rnn_outputs, name=base)
        if used[0]:  # Y is (T, 1, B, U) -> (B, T, U)
            y = builder.make_squeeze({"data": rnn_outputs[0], "axes": [1]})
            if plan.reverse:
                # Keras's go_backwards output is in processing order: step t holds the state after x[T-1-t], ...
                # x[T-1], which ONNX's reverse direction keeps at Y[T-1-t]; so Keras's sequence is Y flipped in time
                flip = [ctx.make_const(utils.make_name(f"{base}_{k}"), np.array(v, np.int64)).output[0]
                        for k, v in (("start", [-1]), ("end", [np.iinfo(np.int64).min]), ("axis", [0]),
                                     ("step", [-1]))]
                y = ctx.make_node("Slice", [y, *flip]).output[0]
            ctx.make_node("Transpose", [y], attr={"perm": [1, 0, 2]}, outputs=[outputs[0]],
                          shapes=[shapes[0]], dtypes=[ctx.get_dtype(x)])
        for out, rnn_out, shape in zip(outputs[1:], rnn_outputs[1:], shapes[1:]):  # (1, B, U) -> (B, U)
            builder.make_squeeze({"data": rnn_out, "axes": [0], "outputs": [out]}, shapes=[shape],
                                 dtypes=[ctx.get_dtype(x)])

    return handler


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
        plans: dict[str, _RecurrentPlan] = {}
        if native_rnn and keras_model is not None:
            plans = stack.enter_context(native_recurrent_layers(keras_model, report))
        elif keras_model is not None:
            for layer in _recurrent_layers(keras_model):
                report.generic[layer.name] = "native recurrent export turned off"
        stack.enter_context(plain_grouped_convolutions())
        stack.enter_context(collected_tf2onnx_passes())  # its garbage copies of the weights, freed
        traced = tf.function(fn, input_signature=specs, autograph=False)
        handler = recurrent_handler(plans)
        # The handler reads `plans` when tf2onnx calls it, after the trace inside from_function filled it.
        handlers = {op: (handler, []) for op in _PLACEHOLDERS}
        handlers["Erfc"] = (erfc_handler, [])
        model_proto, _ = tf2onnx.convert.from_function(
            traced, input_signature=specs, opset=opset, custom_op_handlers=handlers
        )
        _fold_captured_constants(model_proto, traced.get_concrete_function())  # the trace tf2onnx converted
    _unused_rnn_outputs(model_proto)
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


def _unused_rnn_outputs(model: Any) -> None:
    """Blanks the sequence output Y of GRU/LSTM nodes nobody reads, so onnxruntime does not write it."""
    read = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    for node in model.graph.node:
        if node.op_type in ("GRU", "LSTM") and node.output and node.output[0] and node.output[0] not in read:
            node.output[0] = ""
