"""The one answer to "what precision is this ONNX model?": float, int8 (static QDQ or QOperator, or dynamic) or fp16,
read from the ops its graph runs (sub-graphs included) and, for int8, the target dlkit's metadata names."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

_INT8_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
MANIFEST_NAMES = {"float": "float32", "int8": "int8", "fp16": "float16"}  # a bundle's manifest says it this way


@dataclass(frozen=True)
class Precision:
    """kind: "float", "int8" or "fp16". dynamic: int8 with per-batch activation scales (DynamicQuantizeLinear),
    whose outputs depend on the batch it runs in. target, settings: from dlkit's metadata (None, {} otherwise).
    qdq: int8 as QuantizeLinear/DequantizeLinear pairs, whose nodes can be ranked by SQNR."""

    kind: str
    dynamic: bool
    target: str | None
    settings: Mapping[str, Any]
    qdq: bool = False


def precision(source: str | os.PathLike | bytes, metadata: Mapping[str, Any], *,
              feature: str = "dlkit verify") -> Precision:
    """The precision of an ONNX model (a file's path, or its bytes already read); `metadata` is its dlkit metadata
    (`dlkit_runtime.Model.metadata`).

    Raises:
        MissingDependencyError: onnx is not installed (`feature` names what needed it).
    """
    from dlkit.core import dependencies, targets
    from dlkit.core.sessions import all_nodes

    onnx = dependencies.require("onnx", feature)
    model = onnx.load_from_string(source) if isinstance(source, bytes) else \
        onnx.load(str(source), load_external_data=False)
    ops = {n.op_type for n in all_nodes(model.graph)}
    if ops & _INT8_OPS or any(o.endswith("Integer") or o.startswith("QLinear") for o in ops):
        target, settings = targets.of_model(metadata)
        return Precision("int8", "DynamicQuantizeLinear" in ops, target, settings, "DequantizeLinear" in ops)
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        return Precision("fp16", False, None, {})
    return Precision("float", False, None, {})
