"""Answers that say what they are: export records whether an output is a logit or a probability, and `dlkit run`,
`Model.classify` and a bundle's predict.py name each class's value for it ("logit", "probability"), with
`--softmax` turning logits into probabilities."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from dlkit.cli import cli
from dlkit_runtime import Model
from dlkit_runtime.datafiles import read_inputs

ROOT = Path(__file__).resolve().parents[3]
PHOTO = ROOT / "sample_models" / "data" / "photos" / "test" / "flower" / "0000.jpg"


def test_export_records_logits_and_probabilities(photo_onnx_file, onnx_exports):
    photo, cnn = Model(photo_onnx_file), Model(onnx_exports["cnn"])
    assert photo.output_kind() == "logit"  # Dense(4) with no activation
    assert cnn.output_kind("digit") == "probability"  # Dense(10, activation="softmax")
    top = photo.classify(read_inputs(PHOTO, photo), top_k=4)[0]
    assert [p.kind for p in top] == ["logit"] * 4 and set(top[0].to_dict()) == {"index", "label", "logit"}
    probs = photo.classify(read_inputs(PHOTO, photo), top_k=4, softmax=True)[0]
    logits = np.array([p.score for p in top])
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()  # softmax, same order
    assert [p.index for p in probs] == [p.index for p in top] and [p.kind for p in probs] == ["probability"] * 4
    np.testing.assert_allclose([p.score for p in probs], expected, rtol=1e-6)
    assert abs(sum(p.score for p in probs) - 1) < 1e-9  # all 4 classes: a distribution
    # a probability output is not softmaxed twice
    digits = cnn.classify(np.zeros((1, 28, 28, 1), np.float32), top_k=10, softmax=True)[0]
    raw = cnn.predict(np.zeros((1, 28, 28, 1), np.float32))["digit"][0]
    np.testing.assert_allclose(sorted(p.score for p in digits), sorted(raw), rtol=1e-6)


def test_run_names_logits_and_softmax_gives_probabilities(photo_onnx_file):
    run = CliRunner().invoke(cli, ["run", str(photo_onnx_file), "-i", str(PHOTO), "--top-k", "2"])
    assert run.exit_code == 0, run.output
    assert "(logit " in run.stdout and "probability" not in run.stdout
    as_json = CliRunner().invoke(cli, ["run", str(photo_onnx_file), "-i", str(PHOTO), "--top-k", "4", "--softmax",
                                       "--json"])
    assert as_json.exit_code == 0, as_json.output
    row = json.loads(as_json.stdout)["top_k"][0]
    assert all(set(p) == {"index", "label", "probability"} for p in row)
    assert abs(sum(p["probability"] for p in row) - 1) < 1e-6
    assert [p["probability"] for p in row] == sorted((p["probability"] for p in row), reverse=True)


def test_bundle_predict_says_logit(photo_onnx_file, tmp_path):
    import dlkit

    bundle = Path(dlkit.bundle(photo_onnx_file, tmp_path / "bundle", target="x86_64").path)
    shown = subprocess.run([sys.executable, str(bundle / "predict.py"), str(PHOTO), "--top-k", "2"],
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    top = json.loads(shown.stdout)["top_k"][0]
    assert set(top[0]) == {"index", "label", "logit"} and top[0]["logit"] > top[1]["logit"]
    assert "warning" not in shown.stderr.lower()  # the model's own preprocessing is read: no hints needed
    soft = subprocess.run([sys.executable, str(bundle / "predict.py"), str(PHOTO), "--top-k", "4", "--softmax"],
                          capture_output=True, text=True, timeout=120)
    assert soft.returncode == 0, soft.stderr
    assert abs(sum(p["probability"] for p in json.loads(soft.stdout)["top_k"][0]) - 1) < 1e-6
