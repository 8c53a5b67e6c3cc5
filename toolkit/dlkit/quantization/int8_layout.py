"""The graph shaped for onnxruntime's int8 kernels before static quantization, without changing its function
(`preparation.prepare`): `float_stem` (a few-channel first convolution stays float), `float_head` (a small
classifier head stays float), `float_outputs` (a final Softmax or Sigmoid stays float), `channels_last_for_int8`
and `average_pools_as_convolutions`."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from dlkit.core.graph_cleanup import _index

_STEM_OPS = {"Relu", "Clip", "LeakyRelu", "BatchNormalization", "MaxPool", "AveragePool"}
# what a model does to its input before the first convolution (Keras' Resizing, Rescaling, Normalization, a layout
# Transpose): kept in float with a float stem, so the int8 part starts after the stem, not at the raw pixels
_INPUT_OPS = {"Resize", "Mul", "Add", "Sub", "Div", "Transpose", "Cast", "Reshape", "Slice"}
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
    _, _, inits, consumers, producers = _index(model)
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
    block = _first_bottleneck(stem[-1], consumers, inits)
    stem += block
    before = _input_path(conv, producers, inits, {i.name for i in graph.input})
    steps.insert(0, f"first convolution {conv.name} ({channels} input channel(s)) and its "
                    f"{', '.join(n.op_type for n in stem[1:]) or 'nothing else'} kept in float: faster than int8 here"
                    + (f"; so is the input's {', '.join(n.op_type for n in before)} before it" if before else ""))
    if block:
        steps.append(f"the first inverted-residual block after it ({block[0].name} to {block[-1].name}: depthwise "
                     "convolution and a narrow linear projection) kept in float: int8's rounding costs most there")
    return [n.name for n in before + stem], steps


def _first_bottleneck(last, consumers, inits, max_channels: int = 16) -> list:
    """A MobileNet's first inverted-residual block right after the stem: a depthwise convolution, its activation
    and a 1x1 projection to at most `max_channels` channels with no activation (a linear bottleneck); [] otherwise.

    Why float: per-tensor int8 rounding of that narrow projection (8 channels in MobileNetV2 at alpha 0.35,
    carrying everything the later layers see) and of its weights was the largest single source of int8 error in
    the reference photo model: rounding its tensors alone gave 19% of the logits' int8 noise variance, and keeping
    the block in float took top-1 disagreements with float on the 1,200 test photos from 15 to 12 (x86 VNNI host),
    while the block is about 4% of the multiply-adds (48x48x16 depthwise and 16->8 projection), so int8 still pays.
    """
    from onnx import numpy_helper

    def only_user(node):
        users = consumers.get(node.output[0], [])
        return users[0] if len(users) == 1 else None

    def conv_of(node, depthwise: bool):
        if node is None or node.op_type != "Conv" or node.input[1] not in inits:
            return None
        weight = numpy_helper.to_array(inits[node.input[1]])
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if depthwise:
            return node if group > 1 and weight.shape[1] == 1 else None
        return node if group == 1 and weight.shape[2:] == (1, 1) and weight.shape[0] <= max_channels else None

    depthwise = conv_of(only_user(last), depthwise=True)
    if depthwise is None:
        return []
    block = [depthwise]
    while (node := only_user(block[-1])) is not None and node.op_type in _MONOTONIC:
        block.append(node)
    project = conv_of(only_user(block[-1]), depthwise=False)
    if project is None or any(u.op_type in _MONOTONIC for u in consumers.get(project.output[0], [])):
        return []
    return block + [project]


def _input_path(conv, producers, inits, inputs: set[str]) -> list:
    """The chain of input operations (`_INPUT_OPS`, each reading one computed tensor) from a graph input to `conv`,
    in graph order; [] when `conv` does not read a graph input that way. Quantizing them would quantize the raw
    pixels first: with them in float the float stem really runs in float (measured on the photo model, AMD EPYC
    VNNI, one thread: int8 0.244 ms against float's 0.283 at batch 1, 0.294 when they were int8; accuracy drop
    0.25 points instead of 0.58 on 1,200 test photos; and the int8 outputs 0.039 (relative) from the emulated
    Pi 4's instead of 0.055)."""
    chain, tensor = [], conv.input[0]
    while tensor not in inputs:
        node = producers.get(tensor)
        computed = [i for i in node.input if i and i not in inits] if node is not None else []
        if node is None or node.op_type not in _INPUT_OPS or len(computed) != 1:
            return []
        chain.insert(0, node)
        tensor = computed[0]
    return chain


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


def _gemm_transposes_b(node) -> bool:
    return node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute)
