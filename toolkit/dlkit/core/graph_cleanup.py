"""Graph cleanup after conversion: a maintained simplifier (onnxslim) plus the folds it does not make.

onnxslim folds constants and the dynamic Shape/Gather/Concat chain that a Keras Flatten leaves behind, and
drops dead and identity nodes. dlkit then makes the folds it does not (`simplify`): the NCHW->NHWC Transpose
that tf2onnx puts before a Flatten goes into the next MatMul's weights; a Keras Embedding's negative-index wrap
goes (ONNX Gather wraps by itself); a Dense on a sequence becomes one MatMul instead of Reshape -> MatMul ->
Reshape with a Shape chain. The two last are checked by running the nodes they drop, and the caller re-checks
parity on the result.

The graph changes made for static int8 are in `int8_layout`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from dlkit.core import dependencies as _deps


def simplify(model: Any) -> tuple[Any, list[str]]:
    """Returns the cleaned model and a list of what was done, one line per step."""
    onnxslim = _deps.require("onnxslim", "graph cleanup")
    before = len(model.graph.node)
    model = onnxslim.slim(model)
    steps = [f"onnxslim: {before} -> {len(model.graph.node)} nodes"]
    for fold, message in _FOLDS:
        count = fold(model)
        if count:
            steps.append(message.format(count))
    if len(steps) > 1:
        _prune(model)  # what the folds bypassed
    return model, steps


def _fold_flatten_transposes(model: Any) -> int:
    """Transpose(NCHW->NHWC) -> Reshape(N, H*W*C) -> MatMul(W) becomes Reshape(N, C*H*W) -> MatMul(W permuted)."""
    from onnx import numpy_helper

    graph = model.graph
    shapes, _, inits, consumers, _ = _index(model)
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


_ELEMENTWISE = {"Add", "Sub", "Mul", "Cast", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Equal", "Not",
                "And", "Or", "Where", "Neg", "Abs", "Identity"}


def _drop_index_wraps(model: Any) -> int:
    """A Keras Embedding exports its lookup as Gather(table, where(i < 0, i + n, i)), seven elementwise nodes
    before the Gather. ONNX Gather already counts negative indices from the end, so when those nodes map every
    index in [-n, n) to itself modulo n, the Gather can read `i` directly. The check runs the nodes on all 2n
    indices (onnxruntime), so any exporter's spelling of the wrap is recognised and nothing else is."""
    from onnx import helper, numpy_helper

    graph = model.graph
    _, types, inits, _, producers = _index(model)
    done = 0
    for gather in [n for n in graph.node if n.op_type == "Gather" and n.input[0] in inits]:
        axis = next((a.i for a in gather.attribute if a.name == "axis"), 0)
        size = numpy_helper.to_array(inits[gather.input[0]]).shape[axis]
        chain = _elementwise_chain(model, gather.input[1], producers, inits)
        if chain is None or chain[1] not in types:
            continue
        nodes, source = chain
        dtype = helper.tensor_dtype_to_np_dtype(types[source])
        if dtype not in (np.int32, np.int64):  # the index types Gather takes
            continue
        values = np.arange(-size, size, dtype=np.int64).astype(dtype)
        result = _run_nodes(model, nodes, {source: values}, gather.input[1])
        if (result is not None and result.shape == values.shape and np.all((result >= -size) & (result < size))
                and np.all(result % size == values % size)):
            gather.input[1] = source
            done += 1
    return done


def _elementwise_chain(model: Any, name: str, producers: dict, inits: dict) -> tuple[list, str] | None:
    """The elementwise nodes computing `name` from one other tensor and scalar constants, in graph order, and
    that tensor; None if `name` is computed any other way."""
    nodes, sources, stack, seen = [], set(), [name], set()
    while stack:
        current = stack.pop()
        if current in seen or current == "":
            continue
        seen.add(current)
        if current in inits:
            if int(np.prod(inits[current].dims)) != 1:
                return None
            continue
        node = producers.get(current)
        if node is None or node.op_type not in _ELEMENTWISE:
            sources.add(current)
            continue
        nodes.append(node)
        stack.extend(node.input)
    if not nodes or len(sources) != 1:
        return None
    return _in_graph_order(model, nodes), sources.pop()


def _in_graph_order(model: Any, nodes: list) -> list:
    order = {id(n): i for i, n in enumerate(model.graph.node)}
    return sorted(nodes, key=lambda n: order[id(n)])


def _run_nodes(model: Any, nodes: list, feeds: dict[str, np.ndarray], output: str) -> np.ndarray | None:
    """Runs `nodes` (with the model's initializers) on `feeds` in onnxruntime; None if it cannot."""
    import onnxruntime as ort
    from onnx import helper

    used = {i for n in nodes for i in n.input}
    inits = [t for t in model.graph.initializer if t.name in used]
    inputs = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape))
              for k, v in feeds.items()]
    graph = helper.make_graph(list(nodes), "probe", inputs, [helper.make_empty_tensor_value_info(output)], inits)
    probe = helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)
    try:
        options = ort.SessionOptions()
        options.log_severity_level = 4
        session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return session.run([output], feeds)[0]
    except Exception:  # an op or a type onnxruntime rejects here: leave the graph as it is
        return None


def _tensordots_to_matmuls(model: Any) -> int:
    """Keras's Dense on a (N, T, K) tensor exports as Reshape(-1, K) -> MatMul -> Reshape(N, T, M), the last
    shape computed from Shape(x) at run time. ONNX MatMul multiplies the last axis of any rank, so the three
    become one MatMul when the shape sub-graph is checked (run on two unrelated shapes) to give
    shape(x)[:-1] + [M]."""
    from onnx import numpy_helper

    graph = model.graph
    shapes, _, inits, consumers, producers = _index(model)
    outputs = {o.name for o in graph.output}
    outputs.update(*(_subgraph_reads(n) for n in graph.node))  # read inside a Loop/If body: leave alone
    done = 0
    for first in [n for n in graph.node if n.op_type == "Reshape" and n.input[1] in inits]:
        src = shapes.get(first.input[0])
        users = consumers.get(first.output[0], [])
        if not src or len(src) < 3 or src[-1] is None or len(users) != 1 or first.output[0] in outputs:
            continue
        matmul = users[0]
        weight = inits.get(matmul.input[1]) if matmul.op_type == "MatMul" else None
        if (numpy_helper.to_array(inits[first.input[1]]).tolist() != [-1, src[-1]] or weight is None
                or matmul.input[0] != first.output[0] or list(weight.dims[:1]) != [src[-1]] or len(weight.dims) != 2):
            continue
        after = consumers.get(matmul.output[0], [])
        if len(after) != 1 or after[0].op_type != "Reshape" or matmul.output[0] in outputs:
            continue
        second = after[0]
        if not _gives_batch_shape(model, second.input[1], first.input[0], producers, inits, len(src), weight.dims[1]):
            continue
        matmul.input[0] = first.input[0]
        matmul.output[0], second.output[0] = second.output[0], matmul.output[0]  # `second` is left unused
        done += 1
    return done


_SHAPE_OPS = {"Gather", "Concat", "Cast", "Slice", "Unsqueeze", "Squeeze", "Identity"}


def _gives_batch_shape(model: Any, name: str, x: str, producers: dict, inits: dict, rank: int, width: int) -> bool:
    """Whether tensor `name` is computed from Shape(x) and constants only and equals shape(x)[:-1] + [width]."""
    nodes, stack, seen, shape_node = [], [name], set(), None
    while stack:
        current = stack.pop()
        if current in seen or current == "" or current in inits:
            continue
        seen.add(current)
        node = producers.get(current)
        if node is None:
            return False
        if node.op_type == "Shape":
            if node.input[0] != x or any(a.name in ("start", "end") for a in node.attribute):
                return False
            shape_node = node
            continue
        if node.op_type not in _SHAPE_OPS:
            return False
        nodes.append(node)
        stack.extend(node.input)
    if shape_node is None or not nodes:
        return False
    nodes = _in_graph_order(model, nodes)
    for dims in ([2, 3, 5, 7, 11][:rank - 1], [13, 17, 19, 23, 29][:rank - 1]):
        result = _run_nodes(model, nodes, {shape_node.output[0]: np.array([*dims, 4], np.int64)}, name)
        if result is None or result.astype(np.int64).tolist() != [*dims, width]:
            return False
    return True


def _prune(model: Any) -> None:
    """Removes the nodes no graph output depends on, then the initializers nothing reads. Names read inside
    sub-graphs (Loop, If, Scan bodies) count as read."""
    graph = model.graph
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(list(graph.node)):
        if any(out in needed for out in node.output):
            keep.append(node)
            needed.update(node.input)
            needed.update(_subgraph_reads(node))
    keep.reverse()
    del graph.node[:]
    graph.node.extend(keep)
    needed.update(i.name for i in graph.input)  # an initializer listed as an input stays (old IR style)
    for tensor in [t for t in graph.initializer if t.name not in needed]:
        graph.initializer.remove(tensor)


def _subgraph_reads(node) -> set[str]:
    from onnx import AttributeProto

    names: set[str] = set()
    for attribute in node.attribute:
        graphs = [attribute.g] if attribute.type == AttributeProto.GRAPH else list(attribute.graphs)
        for sub in graphs:
            for inner in sub.node:
                names.update(inner.input)
                names.update(_subgraph_reads(inner))
    return names


_FOLDS = (
    (_fold_flatten_transposes, "folded {} Transpose(s) before Flatten into the next MatMul's weights"),
    (_drop_index_wraps, "dropped the negative-index wrap before {} Gather(s) (ONNX Gather wraps by itself)"),
    (_tensordots_to_matmuls, "{} Dense layer(s) on sequences: Reshape -> MatMul -> Reshape became one MatMul"),
)

class _Index(NamedTuple):
    """What the folds look up, worked out in one pass (one shape inference)."""

    shapes: dict[str, list]  # inputs and inferred tensors; None for a dynamic axis
    types: dict[str, int]  # their ONNX element types
    inits: dict[str, Any]  # initializers by name
    consumers: dict[str, list]  # tensor name -> the nodes reading it
    producers: dict[str, Any]  # tensor name -> the node writing it


def _index(model: Any) -> _Index:
    from onnx import shape_inference

    shapes, types = {}, {}
    for vi in [*shape_inference.infer_shapes(model).graph.value_info, *model.graph.input]:
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
        types[vi.name] = vi.type.tensor_type.elem_type
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    producers = {out: node for node in model.graph.node for out in node.output}
    return _Index(shapes, types, {t.name: t for t in model.graph.initializer}, consumers, producers)
