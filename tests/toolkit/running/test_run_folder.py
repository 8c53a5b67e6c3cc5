"""`dlkit run MODEL -i FOLDER`: a camera's folder of images run in batches, one JSON line per file with its path,
the same answers as one image at a time."""

from __future__ import annotations

import json
import warnings

import numpy as np
from click.testing import CliRunner

from dlkit.cli import cli
from dlkit_runtime import Model
from dlkit_runtime.datafiles import read_inputs


def test_a_folder_gives_one_json_line_per_image_in_path_order(onnx_exports, mnist_test, tmp_path):
    from PIL import Image

    images, _ = mnist_test
    folder = tmp_path / "camera"
    names = ["b/1.png", "a/2.png", "a/10.png", "c.png", "b/0.png"]
    for i, name in enumerate(names):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i]).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    run = CliRunner().invoke(cli, ["run", str(onnx_exports["cnn"]), "-i", str(folder), "--top-k", "2",
                                   "-o", str(tmp_path / "out.npz")])
    assert run.exit_code == 0, run.output
    records = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["path"] for r in records] == [str(folder / n) for n in sorted(names)]
    model = Model(onnx_exports["cnn"])
    for record in records:  # the batch's answers are each image's own
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the same "no preprocessing hints" as below
            one = model.predict(read_inputs(record["path"], model))["digit"][0]
        assert [p["index"] for p in record["top_k"]] == list(np.argsort(-one)[:2])
        assert abs(record["top_k"][0]["probability"] - float(one.max())) <= 1e-5
    # the CNN has no preprocessing hints: the warning comes once for the whole folder, not once per image
    assert run.stderr.count("warning:") == 1
    with np.load(tmp_path / "out.npz") as saved:
        assert saved["digit"].shape == (5, 10)


def test_a_folder_without_images_is_one_line(onnx_exports, tmp_path):
    (tmp_path / "empty").mkdir()
    run = CliRunner().invoke(cli, ["run", str(onnx_exports["cnn"]), "-i", str(tmp_path / "empty")])
    assert run.exit_code == 2 and run.stdout == ""
    assert len(run.stderr.strip().splitlines()) == 1 and "holds no images" in run.stderr
