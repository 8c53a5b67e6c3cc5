"""export's gate on real inputs: samples drawn in the model's own input range (0-255 pixels for a model that carries
its preprocessing), an image folder as sample data, and the elementwise rule `|onnx - keras| <= atol + rtol *
|keras|`, loose enough for float32 round-off on 0-255 pixels and tight enough for a real conversion bug."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import dlkit
from dlkit.cli import cli
from dlkit.exporting.parity_checks import within_tolerance

ROOT = Path(__file__).resolve().parents[3]
KERAS = ROOT / "sample_models" / "trained" / "mobilenet.keras"
TEST_PHOTOS = ROOT / "sample_models" / "data" / "photos" / "test"


@pytest.fixture(scope="module")
def photo_export(tmp_path_factory):
    return dlkit.export(KERAS, tmp_path_factory.mktemp("tolerance") / "mobilenet.onnx")


def test_the_photo_model_exports_on_random_pixels_in_its_own_range(photo_export):
    """Resizing and Rescaling inside: the check draws 0-255 pixels (a [0, 1) sample would leave most of the
    network's range untested), and the defaults pass it."""
    assert photo_export.sample_source == "random pixels 0-255"
    assert (photo_export.atol, photo_export.rtol) == (1e-4, 1e-4) and photo_export.max_abs_error <= 1e-3


def test_an_image_folder_is_sample_data(tmp_path):
    result = dlkit.export(KERAS, tmp_path / "m.onnx", sample_data=TEST_PHOTOS, num_samples=32)
    assert result.sample_source == str(TEST_PHOTOS) and result.num_samples == 32
    missing = CliRunner().invoke(cli, ["export", str(KERAS), "-o", str(tmp_path / "n.onnx"),
                                       "--sample-data", str(tmp_path / "nowhere")])
    assert missing.exit_code != 0 and "or a folder of images" in missing.stderr
    assert len([s for s in missing.stderr.strip().splitlines() if not s.startswith("export: ")]) == 1 and not (tmp_path / "n.onnx").exists()


def test_a_one_percent_weight_change_still_fails(photo_export):
    """A conversion bug, simulated: the first convolution's largest weight 1% off. Every pixel position it reads
    feeds the whole network, so the logits move by far more than the tolerance (1e-4 + 1e-4 x |logit|, ~3e-4 on
    logits of O(1)). (The classifier's largest weight is a poor probe on random pixels: their pooled features are
    small, and 1% of that product is about the tolerance itself.) The faithful file is within tolerance."""
    import keras
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    x = np.random.default_rng(1).uniform(0, 255, (16, 128, 128, 3)).astype(np.float32)
    reference = np.asarray(keras.models.load_model(KERAS, safe_mode=True)(x, training=False))
    model = onnx.load(photo_export.path)

    def logits(m) -> np.ndarray:
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]

    assert within_tolerance(reference, logits(model), 1e-4, 1e-4) <= 1
    head = next(n for n in model.graph.node if n.op_type == "Conv")
    weight = next(i for i in model.graph.initializer if i.name == head.input[1])
    values = numpy_helper.to_array(weight).copy()
    values.flat[np.argmax(np.abs(values))] *= 1.01
    weight.CopyFrom(numpy_helper.from_array(values, weight.name))
    assert within_tolerance(reference, logits(model), 1e-4, 1e-4) > 3


def test_beyond_tolerance_is_one_line_naming_both_figures_and_options(tmp_path):
    out = tmp_path / "m.onnx"
    run = CliRunner().invoke(cli, ["export", str(KERAS), "-o", str(out), "--atol", "1e-12", "--rtol", "0"])
    assert run.exit_code == 4 and not out.exists() and run.stdout == ""
    said = [s for s in run.stderr.strip().splitlines() if not s.startswith("export: ")]  # after the stage lines
    line = said[-1]
    assert len(said) == 1 and "atol + rtol x |keras|" in line and "max abs error" in line
    assert "relative error" in line and "--rtol" in line and "--atol" in line, line
