"""Every calibration method on any number of samples: onnxruntime's histogram calibrators (entropy, percentile)
stack the batches' outputs into one array, so dlkit feeds them batches of one size (quantization/
_onnxruntime_compat.py)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

import dlkit
from dlkit.cli import cli
from dlkit.core.datasources import open_data
from dlkit.core.sessions import graph_inputs
from dlkit.quantization._onnxruntime_compat import histogram_batch
from dlkit.quantization.quantizers import Quantizer


@pytest.mark.parametrize("count, size", [(1000, 25), (64, 32), (37, 1), (181, 1), (96, 32), (10, 10), (1, 1)])
def test_histogram_batch_divides_the_samples(count, size):
    assert histogram_batch(count, 32) == size


@pytest.mark.parametrize("method, batches", [("entropy", [1] * 37), ("percentile", [1] * 37),
                                             ("minmax", [32, 5])])
def test_calibration_reader_reads_each_sample_once(method, batches, onnx_exports, mnist_npz):
    model = onnx.load(str(onnx_exports["cnn"]))
    data = open_data(mnist_npz["cnn", "calib"], graph_inputs(model), what="calibration data")
    quantizer = Quantizer(model, "static", {"method": method}, data, 37, None)
    reader = quantizer._reader()
    fed = list(iter(reader.get_next, None))
    assert [len(b["pixels"]) for b in fed] == batches
    # the samples 0..36 in order, each once: nothing dropped or repeated
    assert np.array_equal(np.concatenate([b["pixels"] for b in fed]), data.take(0, 37)["pixels"])


@pytest.mark.parametrize("method", ["entropy", "percentile"])
@pytest.mark.parametrize("samples", [37, 181])
def test_histogram_methods_on_any_number_of_samples(method, samples, onnx_exports, mnist_npz, tmp_path):
    result = dlkit.quantize(onnx_exports["cnn"], tmp_path / "q.onnx", calibration=mnist_npz["cnn", "calib"],
                            calibration_samples=samples, method=method, eval_data=mnist_npz["cnn", "eval"])
    assert result.settings["method"] == method
    # the same int8 graph as minmax: the stem and the 64x10 head float, the rest int8
    assert result.nodes_float == ("cnn_1/conv1_1/BiasAdd", "cnn_1/digit_1/MatMul/MatMulAddFusion")
    assert result.nodes_quantized >= 3
    # 37 images are enough for MNIST's ranges: measured drops of 0.01-0.02 points on the 10k test images and a
    # relative output error near 0.003; 0.5 points and 0.02 leave room for other CPUs' int8 kernels
    assert result.accuracy_drop <= 0.005, result.to_dict()
    assert result.output_error < 0.02
    assert result.top1_agreement >= 0.99 and result.passed is True


def test_histogram_method_json_is_clean(onnx_exports, mnist_npz, tmp_path):
    """onnxruntime's histogram collector prints its progress: none of it may reach stdout."""
    out = tmp_path / "q.onnx"
    run = CliRunner().invoke(cli, ["quantize", str(onnx_exports["cnn"]), "-o", str(out), "--json", "--method",
                                   "percentile", "--calibration", str(mnist_npz["cnn", "calib"]),
                                   "--calibration-samples", "37"])
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout)["settings"]["method"] == "percentile"
    assert "Collecting tensor data" not in run.output and "Number of tensors" not in run.output


def test_failing_static_cnn_quantizer_never_advises_dynamic(onnx_exports):
    """Dynamic int8 makes convolutions 5-10x slower: a failing CNN quantizer points elsewhere."""
    model = onnx.load(str(onnx_exports["cnn"]))
    advice = Quantizer(model, "static", {"method": "entropy"}, None, 0, None)._alternatives()
    assert "--mode dynamic" not in advice and "--method minmax" in advice and "--mode fp16" in advice
    assert "--mode dynamic" not in Quantizer(model, "static", {"method": "minmax"}, None, 0, None)._alternatives()
