"""`dlkit.inspect` on the exported CNN and tiny graphs, fp16 and int8 ones included."""

from __future__ import annotations

import json

import numpy as np
import pytest

import dlkit
from dlkit.errors import InvalidInputError
from tests.runtime import models


@pytest.fixture(scope="module")
def cnn_onnx(tmp_path_factory):
    return models.exported("cnn", tmp_path_factory)


def test_inspect_exported_cnn(cnn_onnx):
    result = dlkit.inspect(cnn_onnx)
    assert result.size_bytes == cnn_onnx.stat().st_size
    assert result.opsets[""] == 17
    assert result.inputs[0].name == "pixels" and result.outputs[0].name == "digit"
    assert result.op_counts["Conv"] >= 1 and sum(result.op_counts.values()) > 5
    assert result.parameters > 10_000 and set(result.parameter_bytes) >= {"float32"}
    assert result.quantization is None
    assert result.metadata["labels"] == models.DIGITS
    assert result.providers == ("cpu",)
    assert "cpu" in result.placement and sum(result.placement["cpu"].values()) >= 1
    json.dumps(result.to_dict())


def test_inspect_counts_exactly(tiny_model):
    result = dlkit.inspect(tiny_model, placement=False)
    assert result.op_counts == {"Reshape": 1, "MatMul": 1}
    assert result.parameters == 784 * 10 + 2
    assert result.parameter_bytes == {"float32": 784 * 10 * 4, "int64": 16}
    assert result.placement == {}
    assert result.metadata["author"] == "tests"


def test_inspect_quantization(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def save(nodes, inits, name, dtype=TensorProto.FLOAT):
        graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", dtype, ["N", 4])],
                                  [helper.make_tensor_value_info("y", dtype, ["N", 4])], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.save(model, tmp_path / f"{name}.onnx")
        return tmp_path / f"{name}.onnx"

    fp16 = save([helper.make_node("MatMul", ["x", "w"], ["y"])],
                [numpy_helper.from_array(np.eye(4, dtype=np.float16), "w")], "fp16", TensorProto.FLOAT16)
    qdq = save([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
                helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])],
               [numpy_helper.from_array(np.array(0.1, np.float32), "s"), numpy_helper.from_array(np.array(0, np.int8), "z")],
               "qdq")
    assert dlkit.inspect(fp16).quantization == "fp16"
    assert dlkit.inspect(qdq).quantization == "int8 QDQ"


def test_inspect_errors(tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist or is not a file"):
        dlkit.inspect(tmp_path / "nope.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\xff\x00junk")
    with pytest.raises(InvalidInputError, match="is not an ONNX model"):
        dlkit.inspect(tmp_path / "junk.onnx")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return models.tiny_classifier(tmp_path_factory.mktemp("tiny_inspect"))
