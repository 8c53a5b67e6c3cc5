"""What each output of an exported graph holds, read from the node that makes it: probabilities (Softmax, Sigmoid),
log-probabilities (LogSoftmax), logits (a dense layer's (batch, classes) output with no activation after it), a
segmentation map (a per-pixel Softmax or Sigmoid over (batch, height, width, classes)), an embedding (an L2-normalized
(batch, features) output), or what an output's doc_string declares (`dlkit.kind=boxes`: the decoding that
`exporting.detection` appends says "boxes", "scores", "classes" and "count").
Recorded as `dlkit.output_kinds` so that `dlkit run`, predict.py and the server say "logit" or "probability", and
`dlkit verify` judges detections, segmentation maps and embeddings by their own figures."""

from __future__ import annotations

from typing import Any

# nodes that pass a value through unchanged in meaning (tf2onnx's renames, reshapes and its NCHW-to-NHWC transposes)
_PASSING = ("Identity", "Cast", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose")
_DENSE = ("Gemm", "MatMul", "Add", "MatMulInteger", "FusedMatMul")
_FLOAT = (1, 10, 11, 16)  # onnx.TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16
_MARK = "dlkit.kind="
_NORMS = ("Sqrt", "Reciprocal", "ReduceL2", "ReduceSumSquare")  # what an L2 normalization divides by


def output_kinds(model: Any) -> dict[str, str]:
    """{output name: "probability" | "log_probability" | "logit" | "segmentation" | "embedding" | a declared kind}
    for the outputs whose kind the graph shows."""
    producers = {out: node for node in model.graph.node for out in node.output}
    kinds = {}
    for value in model.graph.output:
        if value.doc_string.startswith(_MARK):
            kinds[value.name] = value.doc_string[len(_MARK):]
            continue
        node = producers.get(value.name)
        while node is not None and node.op_type in _PASSING and node.input:
            node = producers.get(node.input[0])
        if node is None:
            continue
        rank = len(value.type.tensor_type.shape.dim)
        if node.op_type in ("Softmax", "Sigmoid"):
            kinds[value.name] = "segmentation" if rank == 4 and _is_class_scores(value, rank=4) else "probability"
        elif node.op_type == "LogSoftmax":
            kinds[value.name] = "log_probability"
        elif node.op_type in _DENSE and _is_class_scores(value):
            kinds[value.name] = "logit"
        elif rank == 2 and _is_l2_normalized(node, producers):
            kinds[value.name] = "embedding"
    return kinds


def _is_class_scores(value: Any, rank: int = 2) -> bool:
    """A float (batch, classes) output (or (batch, height, width, classes) for rank 4) with at least two classes."""
    tensor = value.type.tensor_type
    dims = tensor.shape.dim
    return (tensor.elem_type in _FLOAT and len(dims) == rank
            and (not dims[-1].HasField("dim_value") or dims[-1].dim_value >= 2))


def _is_l2_normalized(node: Any, producers: dict) -> bool:
    """`x / ||x||` as ONNX spells it: LpNormalization, or a Mul/Div by a value that comes, within four nodes, from a
    square root or an L2 reduction (tf.math.l2_normalize, keras.layers.UnitNormalization)."""
    if node.op_type == "LpNormalization":
        return True
    if node.op_type not in ("Mul", "Div"):
        return False
    frontier = [(producers.get(name), 1) for name in (node.input[1:] if node.op_type == "Div" else node.input)]
    while frontier:
        current, depth = frontier.pop(0)
        if current is None or depth > 4:
            continue
        if current.op_type in _NORMS:
            return True
        frontier.extend((producers.get(name), depth + 1) for name in current.input)
    return False
