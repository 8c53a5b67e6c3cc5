"""dlkit.verify and `dlkit verify`: the trained CNN against its ONNX, int8 and damaged exports on real MNIST."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

import dlkit
from dlkit.core import parity
from dlkit.cli import cli
from dlkit.errors import InvalidInputError, ShapeMismatchError
from dlkit.verification.pipeline import HISTOGRAM_EDGES, WORST_SAMPLES, verify
from dlkit_runtime import Model


def _candidate(result, path):
    return next(c for c in result.candidates if c.path == str(path))


def _tiny(path, output="y", width=4, scale=1.0):
    """An ONNX model x: float32[N, 4] -> output: float32[N, width] (x @ W, W = scale * I padded)."""
    weight = (scale * np.eye(4, width)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], [output])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N", width])],
        [numpy_helper.from_array(weight, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_keras_vs_float_onnx_on_10k_mnist(cnn_verification, onnx_exports, mnist_npz):
    result = cnn_verification
    assert result.num_samples == 10_000 and result.thresholds["min_agreement"] == 0.99
    out = _candidate(result, onnx_exports["cnn"]).outputs[0]
    assert _candidate(result, onnx_exports["cnn"]).kind == "float" and out.name == "digit"
    # The issue's bar: same top-1 class on every image, max abs error <= 1e-5 (float32 round-off is ~1e-6).
    assert out.top1_agreement == 1.0 and out.top5_agreement == 1.0
    assert out.max_abs_error <= 1e-5 and out.cosine_similarity > 1 - 1e-9
    assert out.reference_accuracy == out.candidate_accuracy and out.accuracy_drop == 0.0
    # The accuracy figure equals an independent run of the ONNX file through the runtime.
    data = np.load(mnist_npz["cnn", "eval"])
    scores = np.concatenate([o["digit"] for o in Model(onnx_exports["cnn"]).predict_batches(data["pixels"], 1000)])
    assert out.candidate_accuracy == pytest.approx(float((scores.argmax(1) == data["y"]).mean()), abs=1e-12)
    assert out.reference_accuracy > 0.98  # the trained sample CNN reaches ~99% on MNIST
    assert sum(out.histogram) == 10_000 and len(out.histogram) == len(HISTOGRAM_EDGES) + 1
    confusion = np.array(out.confusion)
    assert confusion.sum() == 10_000 and np.trace(confusion) == 10_000


def test_int8_inside_the_issue_thresholds(cnn_verification, cnn_int8):
    candidate = _candidate(cnn_verification, cnn_int8)
    out = candidate.outputs[0]
    assert candidate.kind == "int8" and candidate.passed, [b.message for b in candidate.breaches]
    assert out.top1_agreement >= 0.99 and out.accuracy_drop <= 0.01  # the default thresholds
    assert 0 < out.max_abs_error < 0.5 and out.cosine_similarity > 0.999
    # per-node SQNR against the float export (a candidate here), lowest first
    assert candidate.nodes and all(np.isfinite(n.sqnr_db) for n in candidate.nodes)
    assert [n.sqnr_db for n in candidate.nodes] == sorted(n.sqnr_db for n in candidate.nodes)
    assert {"Conv", "Gemm"} <= {n.op_type for n in candidate.nodes}  # the weighted layers are ranked
    # each int8 input against the float tensor it was quantized from: 8 bits give at most ~50 dB, a calibrated
    # tensor 25-45; 15 dB leaves room for any layer, while a weight measured against another (the Flatten's
    # reordered rows) reads about -3 dB (noise as large as the signal)
    assert min(n.sqnr_db for n in candidate.nodes) > 15, candidate.nodes
    # worst samples: those whose class changed come first, each with its image kept for the report
    disagreements = int(np.array(out.confusion).sum() - np.trace(np.array(out.confusion)))
    assert disagreements == round((1 - out.top1_agreement) * 10_000)
    worst = out.worst
    assert len(worst) == WORST_SAMPLES
    flags = [w.reference_class != w.candidate_class for w in worst]
    assert flags == sorted(flags, reverse=True) and sum(flags) == min(disagreements, WORST_SAMPLES)
    assert all(w.inputs["pixels"].shape == (28, 28, 1) and 0 <= w.label <= 9 for w in worst)


def test_damaged_candidate_fails_naming_the_figure(cnn_verification, cnn_damaged):
    assert not cnn_verification.passed
    candidate = _candidate(cnn_verification, cnn_damaged)
    figures = {b.figure for b in candidate.breaches}
    assert figures == {"top1_agreement", "accuracy_drop"}  # noise of one std on the last layer's weights
    breach = next(b for b in candidate.breaches if b.figure == "top1_agreement")
    assert breach.value < 0.95 and "top1_agreement" in breach.message and "below the limit 0.99" in breach.message
    assert [b.candidate for b in cnn_verification.breaches] == [str(cnn_damaged)] * 2  # the others pass
    json.dumps(cnn_verification.to_dict())  # JSON-safe


def test_streamed_figures_equal_whole_array_figures(onnx_exports, cnn_int8, mnist_npz):
    """Batching changes nothing: the running figures equal those computed on all outputs at once."""
    data = mnist_npz["cnn", "eval"]
    a = verify(onnx_exports["cnn"], cnn_int8, data, max_samples=600, batch_size=7).candidates[0].outputs[0]
    b = verify(onnx_exports["cnn"], cnn_int8, data, max_samples=600, batch_size=1000).candidates[0].outputs[0]
    pixels, labels = np.load(data)["pixels"][:600], np.load(data)["y"][:600]
    ref, got = Model(onnx_exports["cnn"]).predict(pixels)["digit"], Model(cnn_int8).predict(pixels)["digit"]
    whole = parity.compare({"digit": ref}, {"digit": got})[0]
    for figures in (a, b):
        assert figures.max_abs_error == pytest.approx(whole.max_abs_error, rel=1e-9)
        assert figures.mean_abs_error == pytest.approx(whole.mean_abs_error, rel=1e-9)
        assert figures.cosine_similarity == pytest.approx(whole.cosine_similarity, abs=1e-12)
        assert figures.relative_error == pytest.approx(
            np.linalg.norm(got.astype(np.float64) - ref) / np.linalg.norm(ref.astype(np.float64)), rel=1e-9)
        assert figures.top1_agreement == pytest.approx(float((ref.argmax(1) == got.argmax(1)).mean()))
        assert figures.candidate_accuracy == pytest.approx(float((got.argmax(1) == labels).mean()))
    assert a.histogram == b.histogram and a.confusion == b.confusion
    assert [w.index for w in a.worst] == [w.index for w in b.worst]


def test_memory_does_not_grow_with_samples(tmp_path):
    """100k samples of 256 floats (100 MB, memory-mapped) are verified in a few batches' worth of memory."""
    width = 256
    weight = np.eye(width, dtype=np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "wide",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", width])],
                              [numpy_helper.from_array(weight, "w")])
    model = tmp_path / "wide.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(model))
    data = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=(100_000, width))
    data[:] = np.random.default_rng(0).random((100_000, width), dtype=np.float32)
    data.flush()
    del data
    tracemalloc.start()
    try:
        result = verify(model, model, tmp_path / "x.npy", batch_size=512)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.num_samples == 100_000 and result.candidates[0].outputs[0].top1_agreement == 1.0
    assert peak < 30e6, peak  # the data is 102 MB; a batch of 512 is 0.5 MB (float64 copies: 1 MB each)


def test_random_samples_and_progress(onnx_exports):
    calls = []
    result = verify(onnx_exports["cnn"], onnx_exports["cnn"], random=300, batch_size=128,
                    progress=lambda done, total: calls.append((done, total)))
    assert calls == [(128, 300), (256, 300), (300, 300)]
    out = result.candidates[0].outputs[0]
    assert result.passed and out.max_abs_error == 0.0 and out.reference_accuracy is None
    assert result.thresholds["max_accuracy_drop"] is None and result.data == "random (300 samples)"


def test_image_folder_with_class_subfolders(onnx_exports, mnist_test, tmp_path):
    from PIL import Image

    images, labels = mnist_test
    for i in range(100):  # the first 100 test images hold every digit, so folder indices are the digits
        folder = tmp_path / "digits" / str(labels[i])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i]).save(folder / f"{i}.png")
    model = onnx.load(str(onnx_exports["cnn"]))  # the export with the preprocessing hint images need
    model.metadata_props.add(key="dlkit.preprocessing", value=json.dumps({"scale": 1 / 255}))
    onnx.save(model, str(tmp_path / "cnn.onnx"))
    result = verify(tmp_path / "cnn.onnx", tmp_path / "cnn.onnx", tmp_path / "digits")
    out = result.candidates[0].outputs[0]
    assert result.num_samples == 100 and out.top1_agreement == 1.0
    assert result.class_names == tuple(str(d) for d in range(10))  # from the folder names
    assert out.reference_accuracy >= 0.97  # labels from the folders, pixels scaled by the hint


def test_mismatched_output_names_and_shapes(tmp_path):
    ref = _tiny(tmp_path / "ref.onnx")
    with pytest.raises(ShapeMismatchError, match=r"reference has \['y'\], candidate has \['z'\]"):
        verify(ref, _tiny(tmp_path / "names.onnx", output="z"), random=8)
    with pytest.raises(ShapeMismatchError, match=r"output 'y' has shape \(2, 3\) in the candidate, \(2, 4\)"):
        verify(ref, _tiny(tmp_path / "shape.onnx", width=3), random=8)


def test_bad_input_before_work(onnx_exports, tmp_path):
    with pytest.raises(InvalidInputError, match="is not an .onnx file"):
        verify(onnx_exports["cnn"], tmp_path / "missing.onnx", random=4)
    with pytest.raises(InvalidInputError, match="give either data"):
        verify(onnx_exports["cnn"], onnx_exports["cnn"])
    np.savez(tmp_path / "bad.npz", pixels=np.zeros((4, 10), np.float32))
    with pytest.raises(InvalidInputError, match="pixels"):
        verify(onnx_exports["cnn"], onnx_exports["cnn"], tmp_path / "bad.npz")
    with pytest.raises(InvalidInputError, match="min_agreement"):
        verify(onnx_exports["cnn"], onnx_exports["cnn"], random=4, min_agreement=2)


def test_lazy_export():
    assert dlkit.verify is verify and dlkit.VerifyResult.__name__ == "VerifyResult"


# CLI: a thin shell; ONNX references keep these fast


def test_cli_passes_with_json(onnx_exports, cnn_int8, mnist_npz):
    result = CliRunner().invoke(cli, ["verify", str(onnx_exports["cnn"]), str(cnn_int8), "--data",
                                      str(mnist_npz["cnn", "eval"]), "--max-samples", "2000", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["passed"] and payload["num_samples"] == 2000
    assert payload["candidates"][0]["outputs"][0]["top1_agreement"] >= 0.99


def test_cli_table(onnx_exports, mnist_npz):
    result = CliRunner().invoke(cli, ["verify", str(onnx_exports["cnn"]), str(onnx_exports["cnn"]), "--data",
                                      str(mnist_npz["cnn", "eval"]), "--max-samples", "500"])
    assert result.exit_code == 0, result.output
    assert "top-1 agree" in result.stdout and "100.00%" in result.stdout and result.stdout.strip().endswith("PASSED")


def test_cli_damaged_exits_4_naming_the_figure(onnx_exports, cnn_damaged, mnist_npz):
    result = CliRunner().invoke(cli, ["verify", str(onnx_exports["cnn"]), str(cnn_damaged), "--data",
                                      str(mnist_npz["cnn", "eval"]), "--max-samples", "2000", "--json"])
    assert result.exit_code == 4
    assert json.loads(result.stdout)["passed"] is False  # the JSON still comes out for CI scripts
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "top1_agreement" in errors[0] and "by 0." in errors[0]


def test_cli_atol_breach(onnx_exports, cnn_int8, mnist_npz):
    result = CliRunner().invoke(cli, ["verify", str(onnx_exports["cnn"]), str(cnn_int8), "--data",
                                      str(mnist_npz["cnn", "eval"]), "--max-samples", "300", "--atol", "1e-4"])
    assert result.exit_code == 4 and "max_abs_error" in result.stderr.splitlines()[-1]


def test_cli_errors(onnx_exports, tmp_path):
    runner = CliRunner()
    missing = runner.invoke(cli, ["verify", str(onnx_exports["cnn"]), str(onnx_exports["cnn"]),
                                  "--data", str(tmp_path / "none.npz")])
    assert missing.exit_code == 2 and missing.stderr.startswith("Error: data") and len(missing.stderr.splitlines()) == 1
    mismatch = runner.invoke(cli, ["verify", str(_tiny(tmp_path / "a.onnx")), str(_tiny(tmp_path / "b.onnx", "z")),
                                   "--random", "4"])
    assert mismatch.exit_code == 4 and "outputs differ" in mismatch.stderr
    no_candidate = runner.invoke(cli, ["verify", str(onnx_exports["cnn"])])
    assert no_candidate.exit_code == 2
