"""What each output of an exported graph holds, read from the node that makes it: probabilities (Softmax, Sigmoid),
log-probabilities (LogSoftmax), or logits (a dense layer's (batch, classes) output with no activation after it).
Recorded as `dlkit.output_kinds` so that `dlkit run`, predict.py and the server say "logit" or "probability"."""

from __future__ import annotations

from typing import Any

# nodes that pass a value through unchanged in meaning (tf2onnx's renames and reshapes at the outputs)
_PASSING = ("Identity", "Cast", "Reshape", "Flatten", "Squeeze", "Unsqueeze")
_DENSE = ("Gemm", "MatMul", "Add", "MatMulInteger", "FusedMatMul")
_FLOAT = (1, 10, 11, 16)  # onnx.TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16


def output_kinds(model: Any) -> dict[str, str]:
    """{output name: "probability" | "log_probability" | "logit"} for the outputs whose kind the graph shows."""
    producers = {out: node for node in model.graph.node for out in node.output}
    kinds = {}
    for value in model.graph.output:
        node = producers.get(value.name)
        while node is not None and node.op_type in _PASSING and node.input:
            node = producers.get(node.input[0])
        if node is None:
            continue
        if node.op_type in ("Softmax", "Sigmoid"):
            kinds[value.name] = "probability"
        elif node.op_type == "LogSoftmax":
            kinds[value.name] = "log_probability"
        elif node.op_type in _DENSE and _is_class_scores(value):
            kinds[value.name] = "logit"
    return kinds


def _is_class_scores(value: Any) -> bool:
    """A float (batch, classes) output with at least two classes."""
    tensor = value.type.tensor_type
    dims = tensor.shape.dim
    return (tensor.elem_type in _FLOAT and len(dims) == 2
            and (not dims[1].HasField("dim_value") or dims[1].dim_value >= 2))
