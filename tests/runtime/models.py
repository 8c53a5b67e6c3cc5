"""ONNX files for the runtime's tests: tiny graphs built with onnx.helper, and the sample CNN exported once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
TRAINED = ROOT / "sample_models" / "trained"
DIGITS = [str(i) for i in range(10)]
_CACHE: dict[str, Path] = {}


def tiny_classifier(folder: Path) -> Path:
    """pixels float32 (N, 28, 28, 1) -> digit float32 (N, 10): a fixed random linear layer, labelled."""
    import onnx
    from onnx import TensorProto, helper

    weights = np.random.default_rng(0).standard_normal((784, 10)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["pixels", "shape"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["digit"])],
        "tiny", [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 28, 28, 1])],
        [helper.make_tensor_value_info("digit", TensorProto.FLOAT, ["N", 10])],
        [helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 784]), onnx.numpy_helper.from_array(weights, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"dlkit.labels": json.dumps([f"class {i}" for i in range(10)]),
                                   "dlkit.preprocessing": json.dumps({"scale": 1 / 255}), "author": "tests"})
    path = folder / "tiny.onnx"
    onnx.save(model, path)
    return path


def two_inputs(folder: Path) -> Path:
    """a float32 (N, 3) and b int64 (N, 3) -> sum float32 (N, 3) = a + float(b); no metadata."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Cast", ["b"], ["bf"], to=TensorProto.FLOAT), helper.make_node("Add", ["a", "bf"], ["sum"])],
        "two", [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 3]),
                helper.make_tensor_value_info("b", TensorProto.INT64, ["N", 3])],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["N", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / "two.onnx"
    onnx.save(model, path)
    return path


def exported(name: str, tmp_path_factory) -> Path:
    """A sample model exported by `dlkit.export` with its labels and pixel scale, once per test session."""
    if name not in _CACHE:
        import dlkit

        out = tmp_path_factory.mktemp("runtime_exports") / f"{name}.onnx"
        dlkit.export(TRAINED / f"{name}.keras", out, labels=TRAINED / "labels_digits.txt", preprocessing={"scale": 1 / 255})
        _CACHE[name] = out
    return _CACHE[name]
