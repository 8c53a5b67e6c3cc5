"""Extras by job, proven in fresh virtual environments: the base install runs models; `dlkit[quantize]` quantizes,
verifies (ONNX against ONNX) and bundles without TensorFlow; each missing extra is named by the verb that needs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(cmd, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=900, env=env, **kwargs)


def _pip(venv: Path, *args) -> None:
    proc = _run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args])
    assert proc.returncode == 0, proc.stderr[-3000:]


def _one_line_error(proc, code: int, *needles: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error: ") and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[-1], lines[-1]


@pytest.mark.slow
def test_each_extra_does_its_job_and_names_the_next(onnx_exports, mnist_npz, tmp_path):
    venv = tmp_path / "venv"
    assert _run([sys.executable, "-m", "venv", venv]).returncode == 0
    dlkit = venv / "bin" / "dlkit"
    cnn = onnx_exports["cnn"]
    calib, test = mnist_npz["cnn", "calib"], mnist_npz["cnn", "eval"]

    # the base install: the runtime and the CLI; a model runs, quantize names its extra
    _pip(venv, str(ROOT))
    np_input = tmp_path / "x.npy"
    made = _run([venv / "bin" / "python", "-c", f"import numpy as np; np.save({str(np_input)!r}, "
                 f"np.load({str(test)!r})['pixels'][:4])"])
    assert made.returncode == 0, made.stderr
    ran = _run([dlkit, "run", cnn, "-i", np_input, "--json"])
    assert ran.returncode == 0 and json.loads(ran.stdout)["outputs"]["digit"]["shape"] == [4, 10], ran.stderr
    _one_line_error(_run([dlkit, "quantize", cnn, "-o", tmp_path / "q.onnx"]), 3, "pip install 'dlkit[quantize]'")

    # dlkit[quantize]: quantize, verify against the float ONNX model and bundle, with no TensorFlow anywhere
    _pip(venv, f"{ROOT}[quantize]")
    absent = _run([venv / "bin" / "python", "-c", "import importlib.util as u; "
                   "print([m for m in ('tensorflow', 'keras', 'tf2onnx') if u.find_spec(m)])"])
    assert absent.stdout.strip() == "[]", absent.stdout
    int8 = tmp_path / "cnn.int8.onnx"
    quantized = _run([dlkit, "quantize", cnn, "-o", int8, "--calibration", calib, "--eval-data", test, "--json"])
    assert quantized.returncode == 0, quantized.stderr
    assert json.loads(quantized.stdout)["accuracy_drop"] <= 0.005  # the bar for the sample CNN
    verified = _run([dlkit, "verify", cnn, int8, "--data", test, "--json"])
    assert verified.returncode == 0 and json.loads(verified.stdout)["passed"], verified.stderr
    bundled = _run([dlkit, "bundle", int8, "-o", tmp_path / "bundle", "--target", "rpi5", "--json"])
    assert bundled.returncode == 0 and (tmp_path / "bundle" / "predict.py").is_file(), bundled.stderr
    script = (f"import sys, dlkit\nr = dlkit.quantize({str(cnn)!r}, {str(tmp_path / 'api.onnx')!r}, "
              f"calibration={str(calib)!r})\nv = dlkit.verify({str(cnn)!r}, [r.path], {str(test)!r}, max_samples=500)\n"
              "assert v.passed, v.to_dict()\n"
              "print(sorted(m for m in ('tensorflow', 'keras', 'tf2onnx') if m in sys.modules))")
    api = _run([venv / "bin" / "python", "-c", script])
    assert api.returncode == 0 and api.stdout.strip().splitlines()[-1] == "[]", api.stderr[-2000:]

    # what the quantize extra cannot do names the export extra
    _one_line_error(_run([dlkit, "export", ROOT / "sample_models" / "trained" / "cnn.keras", "-o", tmp_path / "e.onnx"]),
                    3, "pip install 'dlkit[export]'")
    _one_line_error(_run([dlkit, "verify", ROOT / "sample_models" / "trained" / "cnn.keras", int8, "--data", test]),
                    3, "pip install 'dlkit[export]'")
