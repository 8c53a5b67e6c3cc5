"""Running an in-memory ONNX model for dlkit's own checks: a quiet CPU session, batched runs, tensor infos."""

from __future__ import annotations

import contextlib
import io
from typing import Any, Iterable, Mapping

import numpy as np

from dlkit.errors import InvalidInputError
from dlkit.tensors import TensorInfo
from dlkit_runtime.model import ort_message

BATCH = 64  # samples per run when comparing models


def session(model: Any):
    """A CPU `InferenceSession` for a ModelProto, with onnxruntime's logging limited to errors."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    with contextlib.redirect_stdout(io.StringIO()):  # onnxruntime prints its fallback banner with print()
        return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def batches(samples: Mapping[str, np.ndarray], size: int = BATCH) -> Iterable[dict[str, np.ndarray]]:
    """Slices of `size` samples along the first axis of every array."""
    count = len(next(iter(samples.values())))
    for start in range(0, count, size):
        yield {k: v[start:start + size] for k, v in samples.items()}


def run(model: Any, feeds: Mapping[str, np.ndarray], what: str = "these samples", *,
        batch: int = BATCH) -> dict[str, np.ndarray]:
    """All outputs of a ModelProto on `feeds`, keyed by output name: run in batches and concatenated when every
    output has the batch axis first, else in one call.

    Raises:
        InvalidInputError: onnxruntime cannot run the model on `feeds` (`what` names them in the message).
    """
    import onnxruntime as ort

    sess = session(model)
    names = [o.name for o in sess.get_outputs()]
    options = ort.RunOptions()
    options.log_severity_level = 4  # a failed run raises below; no second report in the log

    def call(batch):
        try:
            return sess.run(names, batch, options)
        except Exception as err:
            raise InvalidInputError(f"onnxruntime could not run the model on {what} ({ort_message(err)}); give data "
                                    "the model accepts (values and sizes)") from err

    parts: dict[str, list] = {n: [] for n in names}
    for part in batches(feeds, batch):
        values = call(part)
        count = len(next(iter(part.values())))
        if any(v.ndim == 0 or v.shape[0] != count for v in values):  # no batch axis first: one call for all
            return dict(zip(names, call(dict(feeds))))
        for name, value in zip(names, values):
            parts[name].append(value)
    return {k: np.concatenate(v) for k, v in parts.items()}


def all_nodes(graph: Any) -> Iterable[Any]:
    """Every node of an ONNX graph, those in the sub-graphs of Loop, If and Scan too."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from all_nodes(sub)


def graph_tensors(values) -> tuple[TensorInfo, ...]:
    """`TensorInfo`s of graph inputs or outputs (ValueInfoProtos)."""
    import onnx

    out = []
    for value in values:
        tensor = value.type.tensor_type
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim)
        out.append(TensorInfo(value.name, dtype, dims))
    return tuple(out)


def graph_inputs(model: Any) -> tuple[TensorInfo, ...]:
    """The inputs a caller feeds: graph inputs that are not initializers."""
    names = {t.name for t in model.graph.initializer}
    return graph_tensors([i for i in model.graph.input if i.name not in names])
