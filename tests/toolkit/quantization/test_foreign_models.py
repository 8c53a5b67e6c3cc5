"""Classifiers as public model zoos ship them, written here with onnx.helper: a batch axis fixed at 1, opset 9 or 11
(IR 3 with the initializers listed as inputs, or IR 6), weights from Constant and ConstantOfShape nodes, NCHW images
and a 1000-class Softmax head. Quantized with the defaults from a calibration file of many samples."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

import dlkit
from dlkit.cli import cli
from dlkit_runtime import Model

pytestmark = pytest.mark.int8  # int8 figures: run again on the emulated AVX2 CPU (tests/cpu_kinds)

SIDE = 32
CLASSES = 1000


def _zoo_classifier(path, opset: int):
    rng = np.random.default_rng(opset)
    w1 = (rng.standard_normal((16, 3, 3, 3)) * 0.4).astype(np.float32)
    w2 = (rng.standard_normal((32, 16, 3, 3)) * 0.15).astype(np.float32)
    # a head whose logits spread over several units (a peaked Softmax, as a trained model's): with near-uniform
    # probabilities any output would look close to the float model's
    fc = (rng.standard_normal((CLASSES, 32)) * 1.5).astype(np.float32)
    nodes = [
        h.make_node("Constant", [], ["w1"], value=nh.from_array(w1)),
        h.make_node("Conv", ["data_0", "w1"], ["c1"], pads=[1] * 4),
        h.make_node("Relu", ["c1"], ["r1"]),
        h.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1] * 4, strides=[2, 2]),
        h.make_node("Relu", ["c2"], ["r2"]),
        h.make_node("GlobalAveragePool", ["r2"], ["g"]),
        h.make_node("Flatten", ["g"], ["f"]),
        h.make_node("Constant", [], ["fc_w"], value=nh.from_array(fc)),
        h.make_node("ConstantOfShape", ["fc_b_shape"], ["fc_b"], value=h.make_tensor("v", T.FLOAT, [1], [0.01])),
        h.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], transB=1),
        h.make_node("Softmax", ["logits"], ["prob_1"]),
    ]
    inits = [nh.from_array(w2, "w2"), nh.from_array(np.zeros(32, np.float32), "b2"),
             nh.from_array(np.array([CLASSES], np.int64), "fc_b_shape")]
    inputs = [h.make_tensor_value_info("data_0", T.FLOAT, [1, 3, SIDE, SIDE])]
    if opset == 9:  # IR 3 wants every initializer among the graph inputs
        inputs += [h.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in inits]
    graph = h.make_graph(nodes, "zoo", inputs, [h.make_tensor_value_info("prob_1", T.FLOAT, [1, CLASSES])], inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", opset)])
    model.ir_version = 3 if opset == 9 else 6
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("opset", [9, 11])
def test_fixed_batch_zoo_classifier_quantizes_from_many_samples(opset, tmp_path):
    """The issue's bar: 16 calibration images for a batch-1 model, the 1000-class Softmax kept in float, and the int8
    output's cosine with the float output >= 0.98 on images it was not calibrated on."""
    path = _zoo_classifier(tmp_path / "zoo.onnx", opset)
    rng = np.random.default_rng(1)
    np.save(tmp_path / "calib.npy", rng.random((16, 3, SIDE, SIDE), dtype=np.float32))
    held = rng.random((24, 3, SIDE, SIDE), dtype=np.float32)
    np.save(tmp_path / "held.npy", held)
    result = dlkit.quantize(path, tmp_path / "zoo.int8.onnx", calibration=tmp_path / "calib.npy")
    assert result.mode == "static" and result.nodes_quantized >= 2, result.to_dict()
    steps = " ".join(result.preparation)
    assert "final Softmax" in steps and "kept in float" in steps, steps
    assert not any(n.op_type == "QLinearSoftmax" for n in onnx.load(result.path).graph.node)
    softmax = [n for n in onnx.load(result.path).graph.node if n.op_type == "Softmax"]
    assert len(softmax) == 1 and not any(i.endswith("_DequantizeLinear_Output") for i in softmax[0].output)
    # independently of quantize's own figures: both files through the runtime, one image at a time (batch 1)
    floats, quant = Model(path), Model(result.path)
    for image in held:
        f, q = floats.predict(image[None])["prob_1"][0], quant.predict(image[None])["prob_1"][0]
        cosine = float(f @ q / (np.linalg.norm(f) * np.linalg.norm(q)))
        assert cosine >= 0.98, cosine
    # verify and bench feed a fixed-batch model one sample at a time, and count every sample
    checked = dlkit.verify(path, [result.path], tmp_path / "held.npy", max_accuracy_drop=None, min_agreement=0.5)
    assert checked.num_samples == 24 and checked.candidates[0].outputs[0].cosine_similarity >= 0.98
    benched = CliRunner().invoke(cli, ["bench", str(result.path), "--runs", "3", "--json"])
    assert benched.exit_code == 0, benched.output


def test_fixed_batch_data_is_fed_in_batches_of_the_models_size(tmp_path):
    """Eval data of N samples for a batch-1 model: every sample counted, in quantize's and verify's figures."""
    path = _zoo_classifier(tmp_path / "zoo.onnx", 11)
    rng = np.random.default_rng(2)
    x = rng.random((20, 3, SIDE, SIDE), dtype=np.float32)
    labels = Model(path).predict(x[:1])["prob_1"].argmax(-1)  # any labels: the figures must count all 20
    np.savez(tmp_path / "eval.npz", data_0=x, y=np.resize(labels, 20))
    result = dlkit.quantize(path, tmp_path / "q.onnx", calibration=tmp_path / "eval.npz",
                            eval_data=tmp_path / "eval.npz")
    assert result.num_samples == 20 and result.float_accuracy is not None
    out = CliRunner().invoke(cli, ["verify", str(path), str(result.path), "--data", str(tmp_path / "eval.npz"),
                                   "--json", "--max-accuracy-drop", "1", "--min-agreement", "0"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["num_samples"] == 20


def test_sizes_count_weights_that_nodes_generate(tmp_path):
    """A file whose weights come from ConstantOfShape nodes is small on disk; quantize reports both sizes, labelled."""
    graph = h.make_graph(
        [h.make_node("ConstantOfShape", ["shape"], ["w"], value=h.make_tensor("v", T.FLOAT, [1], [0.01])),
         h.make_node("MatMul", ["x", "w"], ["y"])], "generated",
        [h.make_tensor_value_info("x", T.FLOAT, ["N", 512])], [h.make_tensor_value_info("y", T.FLOAT, ["N", 512])],
        [nh.from_array(np.array([512, 512], np.int64), "shape")])
    path = tmp_path / "gen.onnx"
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 13)]), path)
    out = CliRunner().invoke(cli, ["quantize", str(path), "-o", str(tmp_path / "q.onnx"), "--mode", "dynamic"])
    assert out.exit_code == 0, out.output
    data = json.loads(CliRunner().invoke(cli, ["quantize", str(path), "-o", str(tmp_path / "q2.onnx"), "--mode",
                                               "dynamic", "--json"]).stdout)
    assert data["float_weights_bytes"] == 512 * 512 * 4 > 100 * data["size_before_bytes"]
    assert data["size_after_bytes"] < data["float_weights_bytes"] / 3  # int8 weights: a quarter, plus the graph
    assert "on disk, 1.0 MB of float weights once generated" in out.stdout and "% of the weights)" in out.stdout
