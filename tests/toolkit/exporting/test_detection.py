"""`dlkit export --with-decoding` on KerasHub's RetinaNet (a tiny backbone, random weights tuned to find boxes): the
decoding and ONNX NonMaxSuppression in the graph give what Keras' predict() gives, with real KerasHub, tf2onnx and
onnxruntime."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

import dlkit
from dlkit.cli import cli
from dlkit.core import boxes
from dlkit_runtime import Model
from tests.toolkit import task_models

pytest.importorskip("keras_hub")


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    return task_models.exported("retinanet", tmp_path_factory)


def test_the_file_gives_predicts_detections(detector):
    """On 6 images the export never saw: per image the same count, every Keras box matched by IoU >= 0.99 and class,
    scores within 1e-4 (measured: IoU 1 - 1e-6, scores 3e-6 apart: one float32 graph in two runtimes)."""
    result = detector["result"]
    assert [o.name for o in result.outputs] == ["boxes", "scores", "classes", "num_detections"]
    assert any("matched" in note for note in result.notes)
    x = task_models.images(6, seed=7)
    want = detector["model"].predict(x, verbose=0)
    got = Model(detector["onnx"]).predict({"images": x})
    np.testing.assert_array_equal(got["num_detections"], want["num_detections"])
    assert want["num_detections"].min() >= 5  # confident boxes, not an empty comparison
    for n in range(len(x)):
        ref = boxes.valid(want["boxes"][n], want["confidence"][n], want["labels"][n], int(want["num_detections"][n]))
        cand = boxes.valid(got["boxes"][n], got["scores"][n], got["classes"][n], int(got["num_detections"][n]))
        found = boxes.match(ref, cand, 0.99)
        assert len(found.pairs) == len(ref.scores) == len(cand.scores)
        assert np.abs(found.score_differences).max() <= 1e-4
    # the padding is KerasHub's: -1 past each image's count
    assert (got["classes"][0, int(got["num_detections"][0]):] == -1).all()
    assert (got["boxes"][0, int(got["num_detections"][0]):] == -1).all()


def test_the_metadata_says_what_each_output_is(detector):
    model = onnx.load(str(detector["onnx"]))
    kinds = json.loads({p.key: p.value for p in model.metadata_props}["dlkit.output_kinds"])
    assert kinds == {"boxes": "boxes", "scores": "scores", "classes": "classes", "num_detections": "count"}
    assert {"NonMaxSuppression", "Sigmoid", "Exp"} <= {n.op_type for n in model.graph.node}


def test_no_decoding_keeps_the_raw_heads(detector, tmp_path):
    out = tmp_path / "heads.onnx"
    run = CliRunner().invoke(cli, ["export", str(detector["keras"]), "-o", str(out), "--no-decoding", "--num-samples",
                                   "2", "--json"])
    assert run.exit_code == 0, run.output
    names = [o["name"] for o in json.loads(run.stdout)["outputs"]]
    assert sorted(names) == ["bbox_regression", "cls_logits"]
    assert "NonMaxSuppression" not in {n.op_type for n in onnx.load(str(out)).graph.node}


def test_decoding_a_model_that_is_not_a_detector_is_refused(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.save(tmp_path / "dense.keras")
    run = CliRunner().invoke(cli, ["export", str(tmp_path / "dense.keras"), "--with-decoding", "--json"])
    assert run.exit_code == 2
    error = json.loads(run.stdout)
    assert error["error_type"] == "InvalidInputError" and "needs a KerasHub object detector" in error["error"]
    assert not (tmp_path / "dense.onnx").exists()


def test_help_says_the_default():
    run = CliRunner().invoke(cli, ["export", "--help"])
    assert "--with-decoding / --no-decoding" in run.output and "on for detectors" in " ".join(run.output.split())
