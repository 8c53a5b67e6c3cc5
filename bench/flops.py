"""FLOPs of an ONNX model (multiply-adds of Conv, MatMul, Gemm, GRU and LSTM counted as 2 FLOPs) and this
machine's single-thread float32 peak, measured with one large MatMul in onnxruntime."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def count_flops(path: Path, batch: int, steps: int = 100) -> float:
    """FLOPs for one run at `batch`; recurrent ops count `steps` time steps."""
    import onnx
    from onnx import numpy_helper, shape_inference

    model = onnx.load(str(path))
    for value in list(model.graph.input):
        dims = value.type.tensor_type.shape.dim
        for i, dim in enumerate(dims):
            if not dim.HasField("dim_value"):
                dim.dim_value = batch if i == 0 else steps
    model = shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*model.graph.value_info, *model.graph.input, *model.graph.output]}
    inits = {t.name: numpy_helper.to_array(t).shape for t in model.graph.initializer}
    shapes.update({k: list(v) for k, v in inits.items()})
    total = 0.0
    for node in model.graph.node:
        out = shapes.get(node.output[0], [])
        if node.op_type == "Conv":
            w = shapes[node.input[1]]  # (Cout, Cin/groups, kh, kw)
            total += 2 * np.prod(out) * np.prod(w[1:])
        elif node.op_type in ("MatMul", "Gemm"):
            a = shapes.get(node.input[0], [])
            if a and out:
                total += 2 * np.prod(out) * a[-1]
        elif node.op_type in ("GRU", "LSTM"):
            w, r = shapes[node.input[1]], shapes[node.input[2]]  # (dirs, gates*H, I), (dirs, gates*H, H)
            x = shapes.get(node.input[0], [steps, batch, 0])
            total += 2 * x[0] * x[1] * (np.prod(w) + np.prod(r))
    return float(total)


def measure_peak_gflops(n: int = 512, seconds: float = 1.0) -> float:
    """Best GFLOP/s of a (n x n) @ (n x n) float32 MatMul on one onnxruntime thread."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "peak",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n]),
                               helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n])],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(helper.make_model(graph).SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    a = np.random.rand(n, n).astype(np.float32)
    feeds = {"a": a, "b": a}
    session.run(None, feeds)
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        session.run(None, feeds)
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9
