"""tf2onnx workaround 2 (see the package docstring): Keras 3's GRU and LSTM as native ONNX `GRU` / `LSTM` ops
instead of a generic `Loop`."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

# Keras activation name -> ONNX RNN activation name (the ones onnxruntime's GRU/LSTM kernels implement)
_ACTIVATIONS = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu"}
PLACEHOLDERS = ("PyFunc", "PyFuncStateless")  # tf.numpy_function with stateful True / False


@dataclass
class RecurrentPlan:
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


def _plan(layer: Any) -> tuple[RecurrentPlan | None, str | None]:
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
        return RecurrentPlan(
            layer.name, "GRU", units, kernel.T[None], recurrent.T[None], B[None], [rec, act],
            linear_before_reset=1 if cell.reset_after else 0, reverse=bool(layer.go_backwards),
        ), None
    # LSTM: Keras orders the gates i, f, c, o; ONNX i, o, f, c.
    order = np.concatenate([np.arange(g * units, (g + 1) * units) for g in (0, 3, 1, 2)])
    b = np.zeros(4 * units, np.float32) if bias is None else bias
    B = np.concatenate([b[order], np.zeros(4 * units, np.float32)])
    return RecurrentPlan(
        layer.name, "LSTM", units, kernel.T[order][None], recurrent.T[order][None], B[None], [rec, act, act],
        reverse=bool(layer.go_backwards),
    ), None


def _never_run(*_args: Any) -> Any:
    raise RuntimeError("dlkit's recurrent placeholder exists only to be converted to ONNX, not to be run")


def recurrent_layers(model: Any) -> list[Any]:
    import keras

    found = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if type(layer) in (keras.layers.GRU, keras.layers.LSTM):
            found.append(layer)
    return found


@contextlib.contextmanager
def native_recurrent_layers(model: Any, report: RecurrentReport) -> Iterator[dict[str, RecurrentPlan]]:
    """While active, tracing `model` puts a placeholder op where each supported GRU/LSTM runs its loop.

    Yields the placeholder token -> plan table that `recurrent_handler` reads. The layers are restored on exit.
    """
    import tensorflow as tf

    plans: dict[str, RecurrentPlan] = {}
    patched = []
    for layer in recurrent_layers(model) if model is not None else []:
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


def recurrent_handler(plans: dict[str, RecurrentPlan]) -> Callable:
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
        # `unused_rnn_outputs` blanks it again in the finished model
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



def unused_rnn_outputs(model: Any) -> None:
    """Blanks the sequence output Y of GRU/LSTM nodes nobody reads, so onnxruntime does not write it."""
    read = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    for node in model.graph.node:
        if node.op_type in ("GRU", "LSTM") and node.output and node.output[0] and node.output[0] not in read:
            node.output[0] = ""
