"""`dlkit export` through click's CliRunner: exit codes, one-line errors, no partial files, --json."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from dlkit.cli import cli
from tests.conftest import ARCHITECTURES, ROOT, TRAINED

CNN = TRAINED / "cnn.keras"


def _run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result


def _one_line_error(result, code, *needles):
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    # the stages' status lines ("export: converting ...") come first; the error is one line, the last
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("export: ")]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Traceback" not in result.output


def test_export_json(tmp_path):
    out = tmp_path / "cnn.onnx"
    result = _run("export", CNN, "-o", out, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["path"] == str(out) and out.is_file()
    assert data["inputs"][0]["name"] == "pixels" and data["outputs"][0]["name"] == "digit"
    assert data["max_abs_error"] <= 1e-5 and data["parity"][0]["cosine_similarity"] > 0.99999
    assert data["size_bytes"] == out.stat().st_size
    assert result.stderr == ""  # quiet under --json


def test_export_shows_its_stages_on_stderr(tmp_path):
    result = _run("export", CNN, "-o", tmp_path / "cnn.onnx")  # CliRunner: not a terminal, as under CI or a pipe
    assert result.exit_code == 0, result.output
    stages = result.stderr.splitlines()
    assert stages[0] == "export: loading the Keras model ..." and stages[-1] == "export: writing the file ..."
    assert "export: converting with tf2onnx and checking parity ..." in stages
    assert "export:" not in result.stdout  # stdout keeps the result alone


def test_export_table_and_default_output(tmp_path):
    model = tmp_path / "mlp.keras"
    shutil.copy(TRAINED / "mlp_digits.keras", model)
    result = _run("export", model)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "mlp.onnx").is_file()
    assert "max abs error" in result.stdout and "digit" in result.stdout


def test_missing_model_path(tmp_path):
    _one_line_error(_run("export", tmp_path / "nope.keras", "-o", tmp_path / "x.onnx"), 2, "does not exist")


def test_file_that_is_not_a_model(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    _one_line_error(_run("export", bad, "-o", tmp_path / "x.onnx"), 2, "not a model dlkit reads")
    fake_h5 = tmp_path / "fake.h5"
    fake_h5.write_text("hello")
    _one_line_error(_run("export", fake_h5, "-o", tmp_path / "x.onnx"), 2, "not an HDF5 file")
    assert not (tmp_path / "x.onnx").exists()


def test_truncated_keras_file(tmp_path):
    truncated = tmp_path / "cut.keras"
    truncated.write_bytes(CNN.read_bytes()[: CNN.stat().st_size // 2])
    _one_line_error(_run("export", truncated, "-o", tmp_path / "x.onnx"), 2, "not a valid .keras file")
    assert not (tmp_path / "x.onnx").exists()


def test_output_folder_missing(tmp_path):
    _one_line_error(_run("export", CNN, "-o", tmp_path / "no" / "x.onnx"), 2, "does not exist", "create it")


def test_existing_output_needs_force(tmp_path):
    out = tmp_path / "x.onnx"
    out.write_bytes(b"keep me")
    _one_line_error(_run("export", CNN, "-o", out), 2, "exists", "--force")
    assert out.read_bytes() == b"keep me"
    assert _run("export", CNN, "-o", out, "--force").exit_code == 0
    assert out.stat().st_size > 100_000


def test_parity_breach_exits_4_and_writes_nothing(tmp_path):
    out = tmp_path / "x.onnx"
    _one_line_error(_run("export", CNN, "-o", out, "--atol", "1e-15", "--rtol", "0"), 4, "atol", "digit")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_lambda_needs_no_safe_mode(suffix, tmp_path):
    import keras

    inputs = keras.Input((3,), name="x")
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2.0 + 1.0, name="affine")(inputs))
    path = tmp_path / f"lambda{suffix}"
    model.save(path)
    _one_line_error(_run("export", path, "-o", tmp_path / "l.onnx"), 2, "--no-safe-mode")
    assert not (tmp_path / "l.onnx").exists()
    result = _run("export", path, "-o", tmp_path / "l.onnx", "--no-safe-mode", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["max_abs_error"] <= 1e-6


def test_unregistered_custom_class_names_the_fix(tmp_path):
    # Run in a fresh interpreter, where sample_models.architectures has not registered the classes.
    code = ("from dlkit.cli import main; import sys; "
            f"sys.argv = ['dlkit', 'export', r'{TRAINED / 'subclassed_mlp.keras'}', '-o', r'{tmp_path / 'a.onnx'}']; main()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    error = [line for line in proc.stderr.splitlines() if not line.startswith("export: ")]
    assert "--custom-objects" in proc.stderr and len(error) == 1
    ok = _run("export", TRAINED / "subclassed_mlp.keras", "-o", tmp_path / "b.onnx", "--custom-objects", ARCHITECTURES)
    assert ok.exit_code == 0, ok.output


def test_bad_option_values(tmp_path):
    _one_line_error(_run("export", CNN, "-o", tmp_path / "x.onnx", "--opset", "7"), 2, "opset 7")
    _one_line_error(_run("export", CNN, "-o", tmp_path / "x.onnx", "--input", "pixels"), 2, "NAME:DTYPE")
    _one_line_error(_run("export", CNN, "-o", tmp_path / "x.onnx", "--rename", "digit"), 2, "OLD=NEW")
    _one_line_error(_run("export", CNN, "-o", tmp_path / "x.onnx", "--sample-data", tmp_path / "s.npy"), 2, "does not exist")
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")
    _one_line_error(_run("export", CNN, "-o", tmp_path / "x.onnx", "--labels", labels), 2, "3 labels")
    assert not (tmp_path / "x.onnx").exists()


def test_sample_data_that_does_not_fit(tmp_path):
    import numpy as np

    data = tmp_path / "s.npy"
    np.save(data, np.zeros((4, 28, 28), np.float32))
    _one_line_error(_run("export", CNN, "-o", tmp_path / "x.onnx", "--sample-data", data), 2,
                    "input 'pixels'", "(4, 28, 28)", "x[..., None]")
    np.save(data, np.zeros((28, 28, 1), np.float32))
    _one_line_error(_run("export", CNN, "-o", tmp_path / "x.onnx", "--sample-data", data), 2, "x[None]")


def test_unconvertible_layer_exits_1(tmp_path):
    code = f"""
import keras, tensorflow as tf
from dlkit.cli import main
@keras.saving.register_keras_serializable(package="t")
class Lgamma(keras.layers.Layer):
    def call(self, x):
        return tf.math.lgamma(x)
i = keras.Input((4,), name="x")
keras.Model(i, Lgamma(name="my_lgamma")(i)).save(r"{tmp_path / 'l.keras'}")
import sys; sys.argv = ["dlkit", "export", r"{tmp_path / 'l.keras'}"]; main()
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "my_lgamma" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "l.onnx").exists()


def test_missing_export_extra_names_the_install(tmp_path):
    # A real interpreter in which tf2onnx cannot be imported (sys.modules[name] = None makes import fail).
    code = ("import sys; sys.modules['tf2onnx'] = None; from dlkit.cli import main; "
            f"sys.argv = ['dlkit', 'export', r'{CNN}', '-o', r'{tmp_path / 'x.onnx'}']; main()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr
    assert "pip install 'dlkit[export]'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("argv", [["-m", "dlkit", "--help"], ["-m", "dlkit", "export", "--help"]])
def test_python_m_dlkit(argv):
    proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True)
    assert proc.returncode == 0 and "Usage:" in proc.stdout
