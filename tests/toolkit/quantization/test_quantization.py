"""dlkit.quantize on the sample models with real MNIST and real text, and on models other exporters make."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

import dlkit
from dlkit.cli import cli
from dlkit.errors import InvalidInputError, ToleranceError
from dlkit_runtime import Model


def _accuracy(path, npz, batch=1000) -> float:
    data = np.load(npz)
    model = Model(path, threads=2)
    scores = np.concatenate([out[model.outputs[0].name] for out in model.predict_batches(data["pixels"], batch)])
    return float((scores.argmax(-1) == data["y"]).mean())


def test_static_int8_cnn_accuracy_and_size(onnx_exports, mnist_npz, tmp_path):
    result = dlkit.quantize(onnx_exports["cnn"], tmp_path / "cnn.int8.onnx",
                            calibration=mnist_npz["cnn", "calib"], eval_data=mnist_npz["cnn", "eval"])
    assert result.mode == "static" and "convolutional" in result.reason  # auto picks static for a CNN
    # The bounds: <= 0.5 points of MNIST test accuracy, a file <= 30% of the float file.
    assert result.accuracy_drop <= 0.005, result.to_dict()
    assert result.size_ratio <= 0.30
    # The first convolution reads one channel and the classifier head is 64x10: both stay float (faster than int8
    # there); the two other convolutions and the hidden dense layer run int8.
    assert result.nodes_float == ("cnn_1/conv1_1/BiasAdd", "cnn_1/digit_1/MatMul/MatMulAddFusion"), result.nodes_float
    assert result.nodes_quantized >= 3
    assert any("first convolution" in step and "kept in float" in step for step in result.preparation)
    assert any("classifier head" in step and "kept in float" in step for step in result.preparation)
    # laid out for onnxruntime's channels-last int8 kernels: once onnxruntime optimizes, one Transpose is left, where
    # the float stem (NCHW) hands over to the int8 convolutions (NHWC); the Flatten needs none
    assert any("channels-last" in step for step in result.preparation)
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.log_severity_level = 3
    ort.InferenceSession(result.path, options, providers=["CPUExecutionProvider"])
    assert [n.op_type for n in onnx.load(tmp_path / "optimized.onnx").graph.node].count("Transpose") == 1
    # Independently of the result's own figures: the written file through the runtime on all 10k images.
    assert _accuracy(result.path, mnist_npz["cnn", "eval"]) == pytest.approx(result.quantized_accuracy)
    assert _accuracy(onnx_exports["cnn"], mnist_npz["cnn", "eval"]) - result.quantized_accuracy <= 0.005
    meta = {p.key: p.value for p in onnx.load(result.path).metadata_props}
    assert json.loads(meta["dlkit.quantization"])["mode"] == "static" and "dlkit.parity" in meta


@pytest.mark.int8
@pytest.mark.parametrize("name, kind", [("mlp_digits", "mlp"), ("mlp_parity", "parity")])
def test_dynamic_int8_mlps(name, kind, onnx_exports, mnist_npz, tmp_path):
    result = dlkit.quantize(onnx_exports[name], tmp_path / "q.onnx", eval_data=mnist_npz[kind, "eval"])
    assert result.mode == "dynamic" and "MLP" in result.reason
    assert result.accuracy_drop <= 0.005, result.to_dict()
    assert result.nodes_quantized >= 2 and result.size_ratio < 0.35
    # A dynamic model's outputs depend on the batch it runs in (activation scales per batch): the figures are for
    # batch 1 by default, and the same file run one sample at a time gives them again, exactly.
    assert result.eval_batch_size == 1
    assert _accuracy(result.path, mnist_npz[kind, "eval"], batch=1) == pytest.approx(result.quantized_accuracy)


@pytest.mark.int8
@pytest.mark.parametrize("name, kind, head", [("mlp_digits", "mlp", "32x10"), ("mlp_parity", "parity", "128x2")])
def test_static_int8_mlps_keep_their_small_head_float(name, kind, head, onnx_exports, mnist_npz, tmp_path):
    result = dlkit.quantize(onnx_exports[name], tmp_path / "q.onnx", calibration=mnist_npz["mlp", "calib"],
                            eval_data=mnist_npz[kind, "eval"])
    assert result.mode == "static"
    assert any("classifier head" in step and f"({head} weights)" in step for step in result.preparation)
    assert len(result.nodes_float) == 1 and result.nodes_quantized >= 1  # the hidden layer(s) int8, the head float
    assert result.accuracy_drop <= 0.005, result.to_dict()
    assert _accuracy(result.path, mnist_npz[kind, "eval"]) == pytest.approx(result.quantized_accuracy)


def _text_windows(text_ids, count=200, steps=100):
    starts = np.linspace(0, len(text_ids) - steps - 1, count).astype(int)
    return np.stack([text_ids[s:s + steps] for s in starts]).astype(np.int32)


@pytest.mark.parametrize("export, mode", [("char_gru", "auto"), ("char_gru", "static"), ("char_gru_loop", "dynamic"),
                                          ("char_gru_loop", "static")])
def test_gru_quantizes_with_next_char_agreement(export, mode, onnx_exports, text_ids, tmp_path):
    x = _text_windows(text_ids)
    data = tmp_path / "text.npz"
    np.savez(data, x=x, hidden=np.zeros((len(x), 256), np.float32))
    result = dlkit.quantize(onnx_exports[export], tmp_path / "q.onnx", mode=mode,
                            calibration=data if mode == "static" else None)
    assert result.mode == ("dynamic" if mode == "auto" else mode)
    feeds = {"x": x, "hidden": np.zeros((len(x), 256), np.float32)}
    floats = Model(onnx_exports[export]).predict(feeds)["logits"]
    quant = Model(result.path).predict(feeds)["logits"]
    agree = floats.argmax(-1) == quant.argmax(-1)  # next-character top-1 over 200 windows x 100 positions
    top2 = np.sort(floats, -1)[..., -2:]
    margin = top2[..., 1] - top2[..., 0]
    # int8 moves a logit by a few quantization steps of the logits (a range of ~44 over 255 levels: ~0.17 each),
    # under 0.5 on every CPU kind (0.29 measured with VNNI, 0.43 with AVX2 and 7-bit weights): a flip needs half
    # the margin, so a position whose float top-2 margin exceeds 1 keeps its top-1.
    assert agree[margin > 1].all(), float(agree[margin > 1].mean())
    # Below that the text is ambiguous (a margin under 0.5 at 29% of the positions, under 1 at 47%) and int8 noise
    # of RMS ~0.08 flips only the nearest ties: far fewer than one position in five of those below 0.5.
    assert agree.mean() >= 0.9, float(agree.mean())


def test_fp16_within_1e2(onnx_exports, mnist_npz, tmp_path):
    result = dlkit.quantize(onnx_exports["cnn"], tmp_path / "cnn.fp16.onnx", mode="fp16",
                            eval_data=mnist_npz["cnn", "eval"])
    assert result.parity[0].max_abs_error <= 1e-2
    model = onnx.load(result.path)
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT  # float32 in and out kept
    assert any(t.data_type == TensorProto.FLOAT16 for t in model.graph.initializer)
    x = np.load(mnist_npz["cnn", "eval"])["pixels"][:500]
    diff = np.abs(Model(result.path).predict(x)["digit"] - Model(onnx_exports["cnn"]).predict(x)["digit"]).max()
    assert diff <= 1e-2


def test_cnn_without_calibration_is_refused_before_work(onnx_exports, tmp_path):
    with pytest.raises(InvalidInputError, match="--calibration"):
        dlkit.quantize(onnx_exports["cnn"], tmp_path / "q.onnx")
    assert not (tmp_path / "q.onnx").exists()


def test_accuracy_bound_needs_labels(onnx_exports, mnist_npz, tmp_path):
    with pytest.raises(InvalidInputError, match="labelled eval data"):
        dlkit.quantize(onnx_exports["cnn"], tmp_path / "q.onnx", calibration=mnist_npz["cnn", "calib"],
                       max_accuracy_drop=0.01)


def _foreign_model(path):
    """An opset-11 MLP as older exporters write it: weights from Constant nodes, a bias from ConstantOfShape,
    an initializer listed among the graph inputs."""
    rng = np.random.default_rng(0)
    w1, w2 = rng.standard_normal((8, 16)).astype(np.float32), rng.standard_normal((16, 4)).astype(np.float32)
    nodes = [
        helper.make_node("Constant", [], ["w1"], value=numpy_helper.from_array(w1)),
        helper.make_node("Constant", [], ["w2"], value=numpy_helper.from_array(w2)),
        helper.make_node("ConstantOfShape", ["bias_shape"], ["b1"],
                         value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.1])),
        helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Add", ["h", "b1"], ["hb"]),
        helper.make_node("Relu", ["hb"], ["r"]), helper.make_node("MatMul", ["r", "w2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "foreign",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8]),
         helper.make_tensor_value_info("bias_shape", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(np.array([16], np.int64), "bias_shape")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 6
    onnx.save(model, path)
    return w1, w2


@pytest.mark.int8
@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_model_with_constant_node_weights_quantizes(mode, tmp_path):
    w1, w2 = _foreign_model(tmp_path / "foreign.onnx")
    x = np.random.default_rng(1).standard_normal((256, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    result = dlkit.quantize(tmp_path / "foreign.onnx", tmp_path / "q.onnx", mode=mode,
                            calibration=tmp_path / "x.npy" if mode == "static" else None)
    steps = " ".join(result.preparation)
    assert "upgraded opset 11" in steps and "Constant node(s)" in steps and "removed from the graph inputs" in steps
    assert result.nodes_quantized >= 2  # both MatMuls, whose weights were Constant nodes
    expected = np.maximum(x @ w1 + 0.1, 0) @ w2
    got = Model(result.path).predict(x)["y"]
    # int8 rounding alone: weights N(0, 1) in 7 or 8 bits per channel (a step of max|w|/63 at worst, ~0.04: noise
    # ~1.1% of the weights' spread) and activations of range ~7 in 8 bits (~0.8%), through two layers: a relative
    # noise r of at most ~3%, so a correlation 1/sqrt(1 + r^2) of at least ~0.9995. Saturating int8 sums (AVX2 with
    # 8-bit weights) fall below it: 0.9977 was measured there before the host-aware default.
    assert np.corrcoef(expected.ravel(), got.ravel())[0, 1] > 0.999


def _one_line(result, code, *needles):
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error: ") and "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[-1]


def test_bad_calibration_data_named_before_work(onnx_exports, tmp_path):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((10, 28, 28), np.float32))
    out = tmp_path / "q.onnx"
    result = CliRunner().invoke(cli, ["quantize", str(onnx_exports["cnn"]), "-o", str(out), "--calibration", str(bad)])
    _one_line(result, 2, "input 'pixels'", "(N, 28, 28, 1)", "(10, 28, 28)")
    assert not out.exists()


def test_non_onnx_file_and_missing_file(tmp_path):
    notes = tmp_path / "notes.onnx"
    notes.write_text("not a model")
    _one_line(CliRunner().invoke(cli, ["quantize", str(notes)]), 2, "not an ONNX model")
    _one_line(CliRunner().invoke(cli, ["quantize", str(tmp_path / "nope.onnx")]), 2, "does not exist")


def test_collapsed_outputs_are_an_error(onnx_exports, mnist_npz, tmp_path):
    # A common mistake: calibrating on raw 0-255 pixels for a model that takes [0, 1]. The activation ranges come
    # out 255x too wide, real inputs quantize to almost nothing, and the outputs collapse.
    raw = tmp_path / "raw.npy"
    np.save(raw, np.load(mnist_npz["cnn", "calib"])["pixels"] * 255)
    out = tmp_path / "q.onnx"
    with pytest.raises(ToleranceError, match="collapsed"):
        dlkit.quantize(onnx_exports["cnn"], out, calibration=raw, eval_data=mnist_npz["cnn", "eval"])
    assert not out.exists()


def test_cli_json(onnx_exports, mnist_npz, tmp_path):
    out = tmp_path / "q.onnx"
    result = CliRunner().invoke(cli, ["quantize", str(onnx_exports["mlp_digits"]), "-o", str(out), "--json",
                                      "--eval-data", str(mnist_npz["mlp", "eval"]), "--target", "arm64"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["mode"] == "dynamic" and data["target"] == "arm64" and data["settings"]["weight_type"] == "int8"
    assert data["accuracy_drop"] <= 0.005 and data["size_after_bytes"] == out.stat().st_size
    assert {"parity", "kept_in_float", "nodes_float", "size_ratio", "preparation"} <= set(data)


def test_image_folder_calibration_resized_and_scaled(model_files, mnist_test, mnist_npz, tmp_path):
    from PIL import Image

    onnx_path = dlkit.export(model_files["cnn", "keras"], tmp_path / "cnn.onnx", preprocessing={"scale": 1 / 255}).path
    folder = tmp_path / "images"
    folder.mkdir()
    for i, image in enumerate(mnist_test[0][-200:]):  # 32x32 PNGs: the folder reader resizes them to 28x28
        Image.fromarray(image).resize((32, 32), Image.BILINEAR).save(folder / f"{i:03d}.png")
    result = dlkit.quantize(onnx_path, tmp_path / "q.onnx", calibration=folder, eval_data=mnist_npz["cnn", "eval"])
    assert result.mode == "static" and result.accuracy_drop <= 0.005, result.to_dict()


def test_image_folder_labels_by_class_name(tmp_path):
    from PIL import Image

    from dlkit.core.datasources import open_data
    from dlkit.core.tensors import TensorInfo

    info = (TensorInfo("pixels", "float32", (None, 4, 4, 1)),)
    for digit in ("3", "7"):  # classes 0-2 and 4-6 have no folder: the numbers still mean the digits
        (tmp_path / digit).mkdir()
        Image.fromarray(np.full((4, 4), int(digit), np.uint8)).save(tmp_path / digit / "a.png")
    source = open_data(tmp_path, info, metadata={"preprocessing": {"scale": 1.0}})
    assert list(source.labels) == [3, 7]
    named = open_data(tmp_path, info, metadata={"preprocessing": {"scale": 1.0}, "labels": ["x", "7", "3"]})
    assert list(named.labels) == [2, 1]
    assert named.take(0, 2)["pixels"][:, 0, 0, 0].tolist() == [3.0, 7.0]


def test_image_folder_takes_turns_by_class(tmp_path):
    """Calibration reads a folder's first samples and holds back its last: in sorted order a class-per-folder set
    would calibrate on its first classes only. The files take turns by class instead, a shorter class running out
    first, and each label still names its own file's folder."""
    from PIL import Image

    from dlkit.core.datasources import open_data
    from dlkit.core.tensors import TensorInfo

    info = (TensorInfo("pixels", "float32", (None, 2, 2, 1)),)
    for digit, count in (("1", 3), ("2", 1), ("3", 2)):
        (tmp_path / digit).mkdir()
        for i in range(count):
            Image.fromarray(np.full((2, 2), int(digit), np.uint8)).save(tmp_path / digit / f"{i}.png")
    source = open_data(tmp_path, info, metadata={"preprocessing": {"scale": 1.0}})
    assert list(source.labels) == [1, 2, 3, 1, 3, 1]
    assert source.take(0, 6)["pixels"][:, 0, 0, 0].tolist() == [1.0, 2.0, 3.0, 1.0, 3.0, 1.0]


def test_subclassed_cnn_average_pool_runs_as_int8_depthwise_conv(onnx_exports, mnist_npz, tmp_path):
    """onnxruntime's 8-bit average pool is a slow loop: the quantizer hands it to the int8 depthwise convolution."""
    import onnxruntime as ort

    result = dlkit.quantize(onnx_exports["subclassed_cnn"], tmp_path / "sub.int8.onnx",
                            calibration=mnist_npz["cnn", "calib"], eval_data=mnist_npz["cnn", "eval"])
    assert any("average pool" in step and "depthwise Conv" in step for step in result.preparation)
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.log_severity_level = 3
    ort.InferenceSession(result.path, options, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(tmp_path / "optimized.onnx").graph.node]
    assert "QLinearAveragePool" not in ops and "AveragePool" not in ops and ops.count("QLinearConv") == 4, ops
    assert result.accuracy_drop <= 0.005, result.to_dict()



def test_quantized_inputs_and_outputs_keep_the_float_shapes(onnx_exports, cnn_int8):
    """The quantizer's symbolic shape inference writes `floor(1.0*N)` for the batch axis of the outputs; the file
    keeps the float model's shapes, so inspect and the bundle's README show `N`."""
    from dlkit.core.sessions import graph_tensors

    for kind in ("input", "output"):
        floats, ints = (graph_tensors(getattr(onnx.load(p).graph, kind)) for p in (onnx_exports["cnn"], cnn_int8))
        assert [t.shape for t in ints] == [t.shape for t in floats] and ints[0].shape[0] == "N", (floats, ints)
