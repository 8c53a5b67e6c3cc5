"""dlkit demo end to end on the sample models: every stage runs for real and the summary holds its figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dlkit.cli import cli


def _run_demo(model, out):
    result = CliRunner().invoke(cli, ["demo", "--model", model, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_demo_cnn(tmp_path):
    data = _run_demo("cnn", tmp_path)
    rows = {r["name"]: r for r in data["rows"]}
    assert data["passed"] is True
    assert rows["keras"]["accuracy"] >= 0.985  # the trained CNN on the 10k MNIST test images
    assert rows["onnx float"]["accuracy"] == pytest.approx(rows["keras"]["accuracy"])
    assert rows["keras"]["accuracy"] - rows["onnx int8"]["accuracy"] <= 0.005
    assert rows["onnx int8"]["size_bytes"] <= 0.30 * rows["onnx float"]["size_bytes"]
    assert rows["onnx float"]["speedup"] > 1 and rows["onnx int8"]["speedup"] > 1
    assert Path(data["report"]).is_file() and "<svg" in Path(data["report"]).read_text()
    bundle = Path(data["bundle"])
    assert (bundle / "manifest.json").is_file() and (bundle / "README.md").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("model, floor", [("mlp", 0.96), ("gru", 0.5)])
def test_demo_other_models(model, floor, tmp_path):
    data = _run_demo(model, tmp_path)
    rows = {r["name"]: r for r in data["rows"]}
    assert data["passed"] is True
    assert rows["keras"]["accuracy"] >= floor
    assert abs(rows["onnx float"]["accuracy"] - rows["keras"]["accuracy"]) <= 0.001
    assert rows["keras"]["accuracy"] - rows["onnx int8"]["accuracy"] <= 0.01
    assert Path(data["bundle"]).is_dir()
