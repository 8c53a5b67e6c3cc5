"""The reference photo model (Resizing and Rescaling inside, raw 0-255 pixels in) gets no preprocessing warning from
any verb, nor from its bundle's predict.py: its export records the preprocessing as in the model, and every image
path feeds it decoded pixels as they are."""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

from click.testing import CliRunner

from dlkit.cli import cli

ROOT = Path(__file__).resolve().parents[3]
KERAS = ROOT / "sample_models" / "trained" / "mobilenet.keras"
LABELS = ROOT / "sample_models" / "trained" / "labels_photos.txt"
TEST_PHOTOS = ROOT / "sample_models" / "data" / "photos" / "test"


def _quiet(argv: list[str]) -> str:
    """Runs a verb; it succeeds and neither its stderr nor Python's warnings mention preprocessing."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = CliRunner().invoke(cli, [str(a) for a in argv])
    assert run.exit_code == 0, (argv, run.stderr, run.exception)
    said = [str(w.message) for w in caught if "preprocessing" in str(w.message)]
    assert "preprocessing" not in run.stderr and not said, (argv[0], run.stderr, said)
    return run.stdout


def test_no_verb_warns_about_preprocessing(photo_onnx_file, tmp_path):
    folder = tmp_path / "photos"
    for cls in ("bird", "flower", "fruit_veg", "mammal"):
        (folder / cls).mkdir(parents=True)
        for photo in sorted((TEST_PHOTOS / cls).glob("*.jpg"))[:8]:
            shutil.copy(photo, folder / cls / photo.name)
    photo = sorted(folder.glob("bird/*.jpg"))[0]
    int8 = tmp_path / "mobilenet.int8.onnx"
    _quiet(["export", KERAS, "-o", tmp_path / "again.onnx", "--sample-data", folder, "--labels", LABELS])
    _quiet(["quantize", photo_onnx_file, "-o", int8, "--calibration", folder, "--eval-data", folder, "--no-payoff"])
    _quiet(["verify", KERAS, photo_onnx_file, int8, "--data", folder, "--min-agreement", "0",
            "--max-accuracy-drop", "1"])
    assert "bird" in _quiet(["run", photo_onnx_file, "-i", photo, "--top-k", "4"])
    assert _quiet(["run", int8, "-i", folder / "flower", "--top-k", "1"]).count("\n") == 8
    assert "cold start" in _quiet(["bench", photo_onnx_file, "--runs", "3", "--warmup", "1"])
    assert "in_model" in _quiet(["inspect", photo_onnx_file])
    _quiet(["bundle", int8, "-o", tmp_path / "bundle", "--float-model", photo_onnx_file])
    predict = subprocess.run([sys.executable, str(tmp_path / "bundle" / "predict.py"), str(photo), "--top-k", "1"],
                             capture_output=True, text=True, timeout=120)
    assert predict.returncode == 0 and "preprocessing" not in predict.stderr, predict.stderr
    assert '"label"' in predict.stdout, predict.stdout
