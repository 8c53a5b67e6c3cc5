"""`dlkit run`, `dlkit bench`, `dlkit inspect` through click: output, --json, exit codes, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from dlkit.cli import cli
from tests.runtime import models


@pytest.fixture(scope="module")
def cnn_onnx(tmp_path_factory):
    return models.exported("cnn", tmp_path_factory)


@pytest.fixture(scope="module")
def digits_npy(tmp_path_factory, mnist_test):
    from sample_models import datasets

    path = tmp_path_factory.mktemp("cli_inputs") / "digits.npy"
    np.save(path, datasets.as_cnn_input(mnist_test[0][:3]))
    return path


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _assert_error(result, code, match):
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and match in lines[0], result.stderr


def test_run_prints_top_k_and_saves(cnn_onnx, digits_npy, mnist_test, tmp_path):
    out = tmp_path / "out.npz"
    result = _invoke("run", cnn_onnx, "--input", digits_npy, "--top-k", 2, "--output", out)
    assert result.exit_code == 0, result.output
    assert "Ran cnn.onnx on cpu" in result.stdout and "saved 1 output(s)" in result.stdout
    tops = [line.split()[1] for line in result.stdout.splitlines()[-4:-1]]
    assert tops == [str(v) for v in mnist_test[1][:3]]  # the sample CNN gets these three right
    assert np.load(out)["digit"].shape == (3, 10)


def test_run_json_and_npz_input(cnn_onnx, digits_npy, tmp_path):
    npz = tmp_path / "x.npz"
    np.savez(npz, pixels=np.load(digits_npy))
    result = _invoke("run", cnn_onnx, "-i", npz, "--top-k", 1, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["providers"] == ["cpu"] and data["outputs"]["digit"] == {"dtype": "float32", "shape": [3, 10]}
    # the CNN ends in softmax (recorded by export): its values are probabilities, and say so
    assert len(data["top_k"]) == 3 and set(data["top_k"][0][0]) == {"index", "label", "probability"}


def test_run_cuda_falls_back_with_a_warning(cnn_onnx, digits_npy):
    result = _invoke("run", cnn_onnx, "-i", digits_npy, "--providers", "cuda,cpu")
    assert result.exit_code == 0, result.output
    assert "warning: execution provider 'cuda' is not in this onnxruntime" in result.stderr
    assert "onnxruntime-gpu" in result.stderr


def test_run_cuda_strict_fails(cnn_onnx, digits_npy):
    _assert_error(_invoke("run", cnn_onnx, "-i", digits_npy, "--providers", "cuda", "--strict"), 1,
                  "'cuda' is not in this onnxruntime")


@pytest.mark.parametrize("make, code, match", [
    (lambda d: np.save(d / "x.npy", np.zeros((28, 28, 1), np.float32)), 2, "add a batch axis: x[None]"),
    (lambda d: np.save(d / "x.npy", np.zeros((1, 28, 28, 1))), 2, "float64 -> float32 can lose values"),
    (lambda d: (d / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n"), 2, "Pillow cannot read"),  # a damaged PNG
    (lambda d: (d / "x.png").write_bytes(b"GIF89a"), 2, "Pillow cannot read"),  # not a PNG at all
    (lambda d: None, 2, "does not exist"),
])
def test_run_input_errors(cnn_onnx, tmp_path, make, code, match):
    make(tmp_path)
    name = "x.png" if (tmp_path / "x.png").exists() else "x.npy"
    _assert_error(_invoke("run", cnn_onnx, "-i", tmp_path / name), code, match)


def test_run_png(cnn_onnx, mnist_test, tmp_path):
    from tests.runtime.test_images import write_png

    images, labels = mnist_test
    result = _invoke("run", cnn_onnx, "-i", write_png(tmp_path / "seven.png", images[0]), "--top-k", 1, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["top_k"][0][0]["label"] == str(labels[0])


def test_run_cast_flag(cnn_onnx, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 28, 28, 1)))
    assert _invoke("run", cnn_onnx, "-i", tmp_path / "x.npy", "--cast").exit_code == 0


def test_run_unknown_provider_and_missing_model(cnn_onnx, digits_npy, tmp_path):
    _assert_error(_invoke("run", cnn_onnx, "-i", digits_npy, "--providers", "gpu"), 2, "unknown execution provider 'gpu'")
    _assert_error(_invoke("run", tmp_path / "nope.onnx", "-i", digits_npy), 2, "does not exist or is not a file")


def test_bench_json_fields(cnn_onnx):
    result = _invoke("bench", cnn_onnx, "--batch", "1,8", "--threads", 1, "--runs", 5, "--warmup", 1, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"path", "providers", "threads", "load_ms", "first_run_ms", "cold_start_ms", "timings",
                         "peak_rss_bytes", "compare", "keras_ratio"}
    assert data["providers"] == ["cpu"] and data["threads"] == 1 and data["peak_rss_bytes"] > 0
    assert data["cold_start_ms"] == pytest.approx(data["load_ms"] + data["first_run_ms"], abs=1e-3)
    assert [t["batch_size"] for t in data["timings"]] == [1, 8]
    for t in data["timings"]:
        assert set(t) == {"batch_size", "runs", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "throughput_per_s"}
        assert t["runs"] == 5 and 0 < t["p50_ms"] <= t["p90_ms"] <= t["p99_ms"] and t["throughput_per_s"] > 0


def test_bench_table_with_compare(cnn_onnx):
    result = _invoke("bench", cnn_onnx, "--batch", 2, "--runs", 3, "--warmup", 1, "--compare", models.TRAINED / "cnn.keras")
    assert result.exit_code == 0, result.output
    assert "cold start" in result.stdout and "keras/onnx" in result.stdout


@pytest.mark.parametrize("args, match", [
    (["--batch", "1,x"], "--batch '1,x' is not a list of positive integers"),
    (["--compare", "nope.keras"], "--compare model 'nope.keras' does not exist"),
])
def test_bench_errors(cnn_onnx, args, match):
    _assert_error(_invoke("bench", cnn_onnx, *args), 2, match)


def test_inspect_text_and_json(cnn_onnx):
    result = _invoke("inspect", cnn_onnx)
    assert result.exit_code == 0, result.output
    assert "opset ai.onnx 17" in result.stdout and "quantization: none" in result.stdout and "cpu runs:" in result.stdout
    data = json.loads(_invoke("inspect", cnn_onnx, "--json", "--no-placement").stdout)
    assert data["inputs"][0]["name"] == "pixels" and data["placement"] == {} and data["metadata"]["labels"]


def test_inspect_errors(tmp_path):
    _assert_error(_invoke("inspect", tmp_path / "nope.onnx"), 2, "does not exist or is not a file")
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    _assert_error(_invoke("inspect", tmp_path / "junk.onnx"), 2, "is not an ONNX model")


def test_help_lists_the_verbs():
    result = _invoke("--help")
    assert all(verb in result.stdout for verb in ("run", "bench", "inspect"))
