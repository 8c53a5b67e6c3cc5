"""Graph cleanup after conversion: a maintained simplifier (onnxslim) plus the folds it does not make.

onnxslim folds constants and the dynamic Shape/Gather/Concat chain that a Keras Flatten leaves behind, and
drops dead and identity nodes. dlkit then makes the folds it does not (`simplify`): the NCHW->NHWC Transpose
that tf2onnx puts before a Flatten goes into the next MatMul's weights; a Keras Embedding's negative-index wrap
goes (ONNX Gather wraps by itself); a Dense on a sequence becomes one MatMul instead of Reshape -> MatMul ->
Reshape with a Shape chain. The two last are checked by running the nodes they drop, and the caller re-checks
parity on the result.

For static int8 (`preparation.prepare`), `float_stem`, `float_head`, `channels_last_for_int8` and
`average_pools_as_convolutions` shape the graph for onnxruntime's int8 kernels without changing its function.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np

from dlkit import _deps


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

_STEM_OPS = {"Relu", "Clip", "LeakyRelu", "BatchNormalization", "MaxPool", "AveragePool"}
_MONOTONIC = {"Relu", "Clip", "LeakyRelu"}  # commute with MaxPool: max(f(x)) == f(max(x)) for non-decreasing f


def float_stem(model: Any, max_channels: int = 4) -> tuple[list[str], list[str]]:
    """The first convolution when it reads at most `max_channels` channels, with the activation and pooling that
    follow it: the nodes to keep in float in a static int8 model.

    onnxruntime's int8 convolution is output-bound when its inner dimension is tiny (3x3x1 = 9): on the sample
    CNN it ran at 18 GOP/s against 350 for the next layer, more than half the int8 model's time, where its float
    NCHWc kernel is four times faster. A MaxPool right after a monotonic activation is moved before it
    (Conv -> MaxPool -> Relu computes the same), so the stem ends on the activation: onnxruntime's QDQ propagation
    would otherwise move the first QuantizeLinear up through the MaxPool and run an 8-bit NCHW MaxPool, slower
    than the whole float model. Changes `model` in place.

    Returns:
        The names of the stem's nodes, and one line per change made.
    """
    from onnx import numpy_helper

    graph = model.graph
    _, _, inits, consumers, _ = _index(model)
    conv = next((n for n in graph.node if n.op_type == "Conv"), None)
    if conv is None or conv.input[1] not in inits:
        return [], []
    groups = next((a.i for a in conv.attribute if a.name == "group"), 1)
    channels = numpy_helper.to_array(inits[conv.input[1]]).shape[1] * groups
    if channels > max_channels:
        return [], []
    stem, steps = [conv], []
    while True:
        users = consumers.get(stem[-1].output[0], [])
        if len(users) != 1 or users[0].op_type not in _STEM_OPS:
            break
        node = users[0]
        if node.op_type == "MaxPool" and stem[-1].op_type in _MONOTONIC and len(stem) > 1:
            _swap(graph, stem[-1], node)
            steps.append(f"{node.name} moved before {stem[-1].name} (same result) so the int8 part starts after it")
            stem.insert(len(stem) - 1, node)
            continue
        stem.append(node)
    steps.insert(0, f"first convolution {conv.name} ({channels} input channel(s)) and its "
                    f"{', '.join(n.op_type for n in stem[1:]) or 'nothing else'} kept in float: faster than int8 here")
    return [n.name for n in stem], steps


def float_head(model: Any, max_weights: int = 4096) -> tuple[list[str], list[str]]:
    """A final Softmax and the Gemm/MatMul feeding it when that layer is small (at most `max_weights` weights):
    the nodes to keep in float in a static int8 model.

    A small int8 head costs more than it saves: on the sample MLP (128x2 head) onnxruntime's QGemm took 2.4 us
    and its QLinearSoftmax 2.5 us at batch 32, where the float Gemm and Softmax take well under 1 us together.
    Kept in float, the int8 models run 5-8% faster at batch 1 and their outputs come closer to the float model's.

    Returns:
        The names of the head's nodes, and one line per head kept.
    """
    graph = model.graph
    _, _, inits, consumers, producers = _index(model)
    outputs = {o.name for o in graph.output}
    names, steps = [], []
    for softmax in [n for n in graph.node if n.op_type == "Softmax" and n.output[0] in outputs]:
        dense = producers.get(softmax.input[0])
        if dense is None or dense.op_type not in ("Gemm", "MatMul") or not dense.name or not softmax.name:
            continue
        weight = inits.get(dense.input[1])
        if weight is None or len(consumers.get(dense.output[0], [])) != 1 or int(np.prod(weight.dims)) > max_weights:
            continue
        names += [dense.name, softmax.name]
        steps.append(f"classifier head {dense.name} ({'x'.join(map(str, weight.dims))} weights) and its Softmax kept "
                     "in float: faster than int8 here")
    return names, steps


_PASS_THROUGH = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Transpose"}


def float_outputs(model: Any) -> tuple[list[str], list[str]]:
    """Each Softmax or Sigmoid whose result is a graph output (directly or through reshapes): the nodes to keep in
    float in an int8 model.

    Quantized, a Softmax's output gets onnxruntime's fixed scale of 1/256, so every probability under 1/512 (most
    of them with 1000 classes) becomes 0 and the ranking users read them for is lost; a Sigmoid's [0, 1] range in
    255 steps loses the small probabilities the same way. In float they cost a few microseconds.

    Returns:
        The names of those nodes, and one line per node kept.
    """
    graph = model.graph
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}

    def reaches_output(name: str, depth: int = 0) -> bool:
        if name in outputs:
            return True
        users = consumers.get(name, [])
        return depth < 4 and bool(users) and all(u.op_type in _PASS_THROUGH and reaches_output(u.output[0], depth + 1)
                                                  for u in users)

    names, steps = [], []
    for node in graph.node:
        if node.op_type in ("Softmax", "Sigmoid") and node.name and reaches_output(node.output[0]):
            names.append(node.name)
            steps.append(f"final {node.op_type} {node.name} kept in float: int8 would give its outputs a fixed "
                         "scale (1/256 for Softmax) that rounds small probabilities to 0")
    return names, steps


def _swap(graph, activation, pool) -> None:
    """a -> activation -> pool -> b becomes a -> pool -> activation -> b (tensor names kept at the ends)."""
    source, middle, sink = activation.input[0], activation.output[0], pool.output[0]
    pool.input[0], pool.output[0] = source, middle
    activation.input[0], activation.output[0] = middle, sink
    nodes = list(graph.node)
    i, j = nodes.index(activation), nodes.index(pool)
    nodes[i], nodes[j] = nodes[j], nodes[i]
    del graph.node[:]
    graph.node.extend(nodes)


def channels_last_for_int8(model: Any, keep_float: Sequence[str] = ()) -> list[str]:
    """Undoes, for int8, the layout choices that suit float: onnxruntime runs int8 convolutions channels-last
    (NHWC) and cancels a Transpose only against another Transpose. So a channel-1 input `Reshape` (NHWC->NCHW)
    becomes the equivalent `Transpose`, and a Flatten folded into NCHW-ordered weights gets back its
    NHWC Transpose and NHWC-ordered weights. Both leave the model's function unchanged."""
    from onnx import helper, numpy_helper

    graph = model.graph
    shapes, _, inits, consumers, producers = _index(model)
    steps = []
    for index, node in enumerate(list(graph.node)):
        if node.op_type != "Reshape" or node.input[1] not in inits:
            continue
        src, dst = shapes.get(node.input[0]), shapes.get(node.output[0])
        if not src or not dst or None in src[1:] or None in dst[1:]:
            continue
        users = consumers.get(node.output[0], [])
        # 1. (N, H, W, 1) -> (N, 1, H, W) into a Conv: the same bytes, but a Transpose onnxruntime can cancel.
        if len(src) == 4 and src[3] == 1 and dst[1:] == [1, src[1], src[2]] and users and all(
                u.op_type == "Conv" and u.name not in keep_float for u in users):
            transpose = helper.make_node("Transpose", [node.input[0]], [node.output[0]], perm=[0, 3, 1, 2],
                                         name=node.name + "_nchw")
            graph.node.remove(node)
            graph.node.insert(index, transpose)
            steps.append(f"input reshape {node.name} -> Transpose (cancels against int8 channels-last)")
            continue
        # 2. Flatten of an NCHW conv output into a MatMul whose weights are in NCHW order: back to NHWC order.
        if len(src) == 4 and len(dst) == 2 and len(users) == 1 and users[0].op_type in ("MatMul", "Gemm"):
            weight = inits.get(users[0].input[1])
            producer = producers.get(node.input[0])
            if (weight is None or producer is None or producer.op_type not in ("Conv", "Relu", "MaxPool", "AveragePool")
                    or len(consumers.get(weight.name, [])) != 1 or _gemm_transposes_b(users[0])):
                continue
            _, c, h, w = src
            w_array = numpy_helper.to_array(weight)
            if w_array.ndim != 2 or w_array.shape[0] != c * h * w:
                continue
            order = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).ravel()
            weight.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(w_array[order]), weight.name))
            nhwc = node.output[0] + "_nhwc"
            graph.node.insert(index, helper.make_node("Transpose", [node.input[0]], [nhwc], perm=[0, 2, 3, 1],
                                                      name=node.name + "_nhwc"))
            node.input[0] = nhwc
            steps.append(f"flatten {node.name} reads channels-last (weights of {users[0].name} reordered)")
    return steps


def average_pools_as_convolutions(model: Any, keep_float: Sequence[str] = ()) -> list[str]:
    """Each 2-D AveragePool whose windows do not overlap or pad becomes the depthwise Conv that computes it
    (one 1/(kh*kw) weight per tap and channel). onnxruntime's 8-bit average pool is a slow reference loop
    (510 us for a 32x14x14x64 pool on the sample subclassed CNN, more than every int8 convolution together)
    while its int8 depthwise convolution is vectorised. The weights quantize exactly (per channel, each is the
    channel's maximum), so the int8 result matches the pool's. Changes `model` in place."""
    from onnx import helper, numpy_helper

    graph = model.graph
    shapes, types, inits, _, _ = _index(model)
    taken = {*inits, *(name for n in graph.node for name in (*n.input, *n.output))}
    steps = []
    for index, node in enumerate(list(graph.node)):
        if node.op_type != "AveragePool" or node.name in keep_float or node.input[0] not in types:
            continue
        dtype = helper.tensor_dtype_to_np_dtype(types[node.input[0]])
        if dtype not in (np.float32, np.float16, np.float64):
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        kernel, src = list(attrs.get("kernel_shape", [])), shapes.get(node.input[0])
        strides, pads = list(attrs.get("strides", [1] * len(kernel))), list(attrs.get("pads", [0] * 2 * len(kernel)))
        if (len(kernel) != 2 or strides != kernel or any(pads) or attrs.get("ceil_mode", 0)
                or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID") or list(attrs.get("dilations", [1, 1])) != [1, 1]
                or not src or len(src) != 4 or src[1] is None):
            continue
        channels, name = src[1], f"{node.name or node.output[0]}_taps"
        while name in taken:
            name += "_"
        taken.add(name)
        weight = numpy_helper.from_array(np.full((channels, 1, *kernel), 1.0 / (kernel[0] * kernel[1]), dtype), name)
        graph.initializer.append(weight)
        conv = helper.make_node("Conv", [node.input[0], weight.name], [node.output[0]], name=node.name,
                                group=channels, kernel_shape=kernel, strides=strides)
        graph.node.remove(node)
        graph.node.insert(index, conv)
        steps.append(f"average pool {node.name} -> depthwise Conv (onnxruntime's int8 pool is slow)")
    return steps


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


def _gemm_transposes_b(node) -> bool:
    return node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute)
