"""`dlkit verify` on outputs that are not class scores, judged by what the export recorded each output to be:
a KerasHub RetinaNet's detections (matched boxes, precision and recall at IoU 0.5 against the Keras reference's
predict()), and a conv net's segmentation map (pixel agreement, mean IoU) and embedding (cosine). Real KerasHub,
tf2onnx and onnxruntime."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

import dlkit
from dlkit.cli import cli
from tests.toolkit import task_models

pytest.importorskip("keras_hub")


def _shifted(path, out, name: str, change) -> None:
    """A copy of an ONNX file with one initializer changed."""
    model = onnx.load(str(path))
    for i, init in enumerate(model.graph.initializer):
        if init.name == name:
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(change(numpy_helper.to_array(init)), name))
    onnx.save(model, str(out))


def test_detections_match_the_keras_reference(tmp_path_factory):
    """Keras' predict() against the ONNX decoding on 4 random images: every box found again (precision and recall
    100%, IoU 1 within float32 rounding), passed; the CLI prints the figures."""
    files = task_models.exported("retinanet", tmp_path_factory)
    result = dlkit.verify(files["keras"], [files["onnx"]], random=4, batch_size=2)
    assert result.passed, result.breaches
    (task,) = result.candidates[0].tasks
    f = task.figures
    assert task.kind == "detection" and task.output == "boxes"
    assert f["reference_detections"] >= 20 and f["matched"] == f["reference_detections"] == f["candidate_detections"]
    assert f["precision"] == f["recall"] == 1.0 and f["mean_iou"] > 0.9999 and f["max_score_error"] < 1e-4
    outputs = {o.name: o for o in result.candidates[0].outputs}
    assert outputs["scores"].top1_agreement is None  # detection scores are not class scores
    run = CliRunner().invoke(cli, ["verify", str(files["keras"]), str(files["onnx"]), "--random", "4"])
    assert run.exit_code == 0, run.output
    assert "detections: " in run.stdout and "precision 100.00%, recall 100.00%" in run.stdout


def test_moved_anchors_lose_boxes_and_fail(tmp_path_factory, tmp_path):
    """The candidate's anchors moved 12 px right: small boxes overlap their reference by less than 0.5 and go
    unmatched, so precision and recall fall below --min-agreement and verify exits 4 naming them."""
    files = task_models.exported("retinanet", tmp_path_factory)
    moved = tmp_path / "moved.onnx"
    _shifted(files["onnx"], moved, "dlkit_decode/c0", lambda a: a + np.array([12, 0], np.float32))
    run = CliRunner().invoke(cli, ["verify", str(files["onnx"]), str(moved), "--random", "4", "--json"])
    assert run.exit_code == 4
    result = json.loads(run.stdout)
    figures = result["candidates"][0]["tasks"][0]["figures"]
    assert figures["recall"] < 0.9 and figures["precision"] < 0.9
    assert {b["figure"] for b in result["breaches"]} >= {"recall", "precision"}
    assert "below the limit" in result["breaches"][0]["message"]


def test_segmentation_and_embedding_figures(tmp_path_factory, tmp_path):
    """A per-pixel softmax is recorded as a segmentation map and an L2-normalized vector as an embedding; against
    Keras, the ONNX file agrees on every pixel (mIoU 100%) and its embeddings have cosine 1. With the last
    convolution's weights of class 0 raised by 0.5 (on ReLU features), class 0 takes pixels: agreement and mIoU fall, the report shows them."""
    files = task_models.exported("segmenter", tmp_path_factory)
    kinds = dlkit_runtime_kinds(files["onnx"])
    assert kinds["mask"] == "segmentation" and kinds["embedding"] == "embedding"
    result = dlkit.verify(files["keras"], [files["onnx"]], random=16)
    tasks = {t.kind: t.figures for t in result.candidates[0].tasks}
    assert result.passed and tasks["segmentation"]["pixel_agreement"] == 1.0 and tasks["segmentation"]["mean_iou"] == 1.0
    assert tasks["embedding"]["min_cosine"] > 1 - 1e-6
    model = onnx.load(str(files["onnx"]))
    softmax = next(n for n in model.graph.node if n.op_type == "Softmax")
    weight = next(n for n in model.graph.node if softmax.input[0] in n.output).input[1]  # the mask Conv's (4, 8, 1, 1)
    worse = tmp_path / "worse.onnx"
    _shifted(files["onnx"], worse, weight, lambda a: a + np.array([0.5, 0, 0, 0], np.float32)[:, None, None, None])
    report = tmp_path / "report.html"
    bad = dlkit.verify(files["keras"], [worse], random=16, report=report)
    seg = next(t for t in bad.candidates[0].tasks if t.kind == "segmentation").figures
    assert seg["pixel_agreement"] < 0.9 and seg["mean_iou"] < 0.9 and not bad.passed
    assert [b.figure for b in bad.breaches] == ["pixel_agreement"]
    html = report.read_text()
    assert "pixel agreement" in html and "Detections, segmentation maps, embeddings" in html


def dlkit_runtime_kinds(path) -> dict:
    from dlkit_runtime import Model

    return Model(path).metadata["output_kinds"]
