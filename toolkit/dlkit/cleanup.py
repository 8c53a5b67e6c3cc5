"""Graph cleanup after conversion: a maintained simplifier (onnxslim) plus the folds it does not make.

onnxslim folds constants and the dynamic Shape/Gather/Concat chain that a Keras Flatten leaves behind, and
drops dead and identity nodes. dlkit then folds the NCHW->NHWC Transpose that tf2onnx puts before a Flatten
into the next MatMul's weights, so the convolutions and the dense layer meet without a layout change.
The caller re-checks parity on the result.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dlkit import _deps


def simplify(model: Any) -> tuple[Any, list[str]]:
    """Returns the cleaned model and a list of what was done, one line per step."""
    onnxslim = _deps.require("onnxslim", "graph cleanup")
    before = len(model.graph.node)
    model = onnxslim.slim(model)
    steps = [f"onnxslim: {before} -> {len(model.graph.node)} nodes"]
    folded = _fold_flatten_transposes(model)
    if folded:
        steps.append(f"folded {folded} Transpose(s) before Flatten into the next MatMul's weights")
    return model, steps


def _fold_flatten_transposes(model: Any) -> int:
    """Transpose(NCHW->NHWC) -> Reshape(N, H*W*C) -> MatMul(W) becomes Reshape(N, C*H*W) -> MatMul(W permuted)."""
    from onnx import numpy_helper, shape_inference

    graph = model.graph
    shapes = {}
    for vi in shape_inference.infer_shapes(model).graph.value_info:
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    inits = {t.name: t for t in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}

    folded = 0
    for transpose in [n for n in graph.node if n.op_type == "Transpose"]:
        perm = next((list(a.ints) for a in transpose.attribute if a.name == "perm"), None)
        src = shapes.get(transpose.input[0])
        users = consumers.get(transpose.output[0], [])
        if perm != [0, 2, 3, 1] or not src or None in src[1:] or len(users) != 1 or transpose.output[0] in outputs:
            continue
        reshape = users[0]
        shape_init = inits.get(reshape.input[1]) if reshape.op_type == "Reshape" else None
        matmuls = consumers.get(reshape.output[0], []) if shape_init is not None else []
        if len(matmuls) != 1 or matmuls[0].op_type != "MatMul" or matmuls[0].input[0] != reshape.output[0]:
            continue
        _, c, h, w = src
        target = numpy_helper.to_array(shape_init)
        weight = inits.get(matmuls[0].input[1])
        if (list(target[1:]) != [c * h * w] or weight is None or len(consumers.get(weight.name, [])) != 1
                or len(consumers.get(shape_init.name, [])) != 1):
            continue
        w_array = numpy_helper.to_array(weight)
        if w_array.ndim != 2 or w_array.shape[0] != c * h * w:
            continue
        # Row j of the new weights (NCHW flatten order) is row order[j] of the old (NHWC flatten order).
        order = np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1).ravel()
        weight.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(w_array[order]), weight.name))
        reshape.input[0] = transpose.input[0]
        graph.node.remove(transpose)
        folded += 1
    return folded
