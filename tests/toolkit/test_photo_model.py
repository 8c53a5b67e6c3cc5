"""Every stage on the model a Pi user really brings: the reference MobileNetV2 (alpha 0.35, 96 px, Resizing and
Rescaling inside, raw 0-255 pixels in, logits out) trained on the shipped photo set, fed the shipped JPEG folders
(sample_models/data/photos: 4,000 training and 1,200 test photos of 4 classes).

int8 figures depend on the CPU's kernels, so the int8 tests are marked `int8`; the bounds below hold on any CPU
family whose int8 kernels add u8 x s8 products exactly (VNNI, ARM) and say why beside each.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import dlkit
from dlkit.cli import cli
from dlkit_runtime import Model, cpu

ROOT = Path(__file__).resolve().parents[2]
KERAS = ROOT / "sample_models" / "trained" / "mobilenet.keras"
LABELS = ROOT / "sample_models" / "trained" / "labels_photos.txt"
PHOTOS = ROOT / "sample_models" / "data" / "photos"
TEST_PHOTOS = 1200


def _photos(split: str, step: int, count: int) -> np.ndarray:
    from PIL import Image

    files = sorted((PHOTOS / split).glob("*/*.jpg"))[::step][:count]
    return np.stack([np.asarray(Image.open(f).convert("RGB"), np.float32) for f in files])


@pytest.fixture(scope="module")
def photo_onnx(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photo")
    return dlkit.export(KERAS, folder / "mobilenet.onnx", sample_data={"image": _photos("test", 5, 240)},
                        labels=LABELS)


@pytest.fixture(scope="module")
def photo_int8(photo_onnx):
    path = Path(photo_onnx.path)
    return dlkit.quantize(path, path.with_suffix(".int8.onnx"), calibration=PHOTOS / "train", eval_data=PHOTOS / "test")


def test_dataset_is_what_the_source_says():
    counts = {split: Counter(p.parent.name for p in (PHOTOS / split).glob("*/*.jpg")) for split in ("train", "test")}
    assert counts["train"] == {c: 1000 for c in ("bird", "flower", "fruit_veg", "mammal")}
    assert sum(counts["test"].values()) == TEST_PHOTOS >= 1000  # the floor for figures that mean something
    assert LABELS.read_text().split() == sorted(counts["test"])


def test_export_keeps_the_preprocessing_inside_with_parity_on_photos(photo_onnx):
    """One raw-pixel input; Resizing becomes a Resize op; Keras and onnxruntime agree on real photos. The bound:
    the same float32 graph in two runtimes differs by summation order only, about 1e-6 relative per layer, and the
    logits are O(1-10): 1e-4 absolute leaves an order of magnitude, while a wrong conversion is off by O(1)."""
    import onnx

    model = onnx.load(photo_onnx.path)
    assert [(t.name, t.dtype, t.shape[1:]) for t in photo_onnx.inputs] == [("image", "float32", (128, 128, 3))]
    assert [(t.name, t.shape[1:]) for t in photo_onnx.outputs] == [("logits", (4,))]
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["Resize"] == 1 and ops["Conv"] >= 50 and not any(op.startswith("Random") for op in ops)
    assert photo_onnx.sample_source != "random" and photo_onnx.max_abs_error <= 1e-4


def test_the_preprocessing_inside_is_recorded_and_photos_go_in_raw(photo_onnx, tmp_path):
    """Resizing and Rescaling at the input are recorded as what they are, so images are fed as decoded (0-255)
    without a warning, by the runtime and by the bundle's predict.py alike."""
    import warnings

    model = Model(photo_onnx.path)
    assert model.metadata["preprocessing"] == {"in_model": ["Resizing(96x96)", "Rescaling(x0.00784314, -1)"]}
    photo = sorted((PHOTOS / "test" / "bird").glob("*.jpg"))[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "no preprocessing hints" warning from the runtime's image path
        run = CliRunner().invoke(cli, ["run", photo_onnx.path, "-i", str(photo), "--top-k", "1"])
    assert run.exit_code == 0 and "warning" not in run.stderr, run.stderr
    best = int(model.predict(_photos_one(photo))["logits"].argmax())  # the photo as decoded, 0-255
    assert LABELS.read_text().split()[best] in run.stdout, run.stdout


@pytest.mark.int8
def test_static_int8_of_the_photo_model(photo_int8):
    """Default static int8, calibrated on the training folder, judged on the 1,200 test photos.

    Bounds: post-training int8 of a MobileNetV2 costs well under a point of top-1 on ImageNet (per-channel weights,
    8-bit activations); on 1,200 photos a paired drop with ~2% of the samples changing class has a standard error
    of about 0.4 points, so 2 points is the loss plus four standard errors. Agreement: the samples whose class
    changes are those within int8's noise (relative output error ~0.04) of a tie; 3% of them would mean a
    far noisier model. The acceptance bar itself (verify's defaults, 99% and 1 point) is pinned by the verify test
    below, on the whole test folder."""
    assert photo_int8.mode == "static" and photo_int8.settings["activation_type"] == "uint8"
    assert photo_int8.nodes_quantized >= 60 and photo_int8.size_after_bytes <= 0.45 * photo_int8.size_before_bytes
    assert photo_int8.accuracy_drop <= 0.02 and photo_int8.top1_agreement >= 0.97
    assert photo_int8.output_error <= 0.1


@pytest.mark.int8
def test_int8_graph_fuses_every_convolution_without_layout_transposes(photo_int8, tmp_path):
    """The graph onnxruntime runs: the input's Resize and Rescaling, the first convolution and the first
    inverted-residual block (depthwise and narrow projection) in float (the float stem), then every other Conv a QLinearConv and every residual Add a QLinearAdd, with no layout Transposes
    between them (int8 activations left 33 Transposes and float islands on x86)."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.log_severity_level = 3
    ort.InferenceSession(photo_int8.path, options, providers=["CPUExecutionProvider"])
    ops = Counter(n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node)
    assert ops["QLinearConv"] >= 49 and ops["QLinearAdd"] >= 10, ops  # 52 convolutions, 3 of them the float stem
    assert ops["Conv"] <= 3 and ops["Transpose"] <= 3, ops  # the stem's three, and the layout around it only
    assert any("first inverted-residual block" in step for step in photo_int8.preparation), photo_int8.preparation
    assert any("kept in float" in step and "Resize" in step for step in photo_int8.preparation), photo_int8.preparation


@pytest.mark.int8
def test_verify_on_the_test_folder_gives_numbers(photo_onnx, photo_int8, tmp_path):
    """verify from Keras on the JPEG folder with its default thresholds (top-1 agreement >= 99%, accuracy drop
    <= 1 point): the float export agrees with Keras on every photo (ties within float round-off are the only way to
    differ), and the default int8 file passes: the issue's acceptance bar. The figure is exact integer arithmetic on
    a kernel family (VNNI here; the emulated Pis give the same 1,188 of 1,200, tests/arm), so it does not drift
    from run to run; it has no margin (12 disagreements, the most 99% allows), so a recipe change that costs one
    more near-tie fails here, which is the point."""
    result = dlkit.verify(KERAS, [photo_onnx.path, photo_int8.path], data=PHOTOS / "test", report=tmp_path / "r.html")
    floats, ints = (c.outputs[0] for c in result.candidates)
    assert floats.top1_agreement >= 0.999 and abs(floats.accuracy_drop) <= 0.001
    assert ints.top1_agreement >= 0.99 and ints.accuracy_drop <= 0.01 and result.passed, ints.to_dict()
    assert 0.75 <= floats.reference_accuracy <= 0.88  # the shipped model: 81.8% on these photos (metrics.json)


@pytest.mark.int8
def test_int8_figures_name_the_kernels_that_computed_them(photo_int8):
    """The figures quantize prints are the host's kernels' (named in computed_on and the target)."""
    host = cpu.host()
    assert photo_int8.host_cpu["family"] == host.family
    assert photo_int8.target == ("x86-avx2" if host.family in ("x86-avx2", "other") else host.family)


def test_bundle_predicts_a_jpeg(photo_int8, photo_onnx, tmp_path):
    """The bundle's predict.py on a camera-like JPEG gives the host runtime's top class, as a label."""
    import subprocess
    import sys

    folder = tmp_path / "bundle"
    dlkit.bundle(photo_int8.path, folder, target="rpi5", float_model=photo_onnx.path)
    photo = sorted((PHOTOS / "test" / "flower").glob("*.jpg"))[0]
    proc = subprocess.run([sys.executable, str(folder / "predict.py"), str(photo), "--top-k", "1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    logits = Model(photo_int8.path).predict(_photos_one(photo))["logits"]
    assert LABELS.read_text().split()[int(logits.argmax())] in proc.stdout, proc.stdout


def _photos_one(path: Path) -> np.ndarray:
    """A photo as dlkit decodes it (TensorFlow's JPEG values): Pillow's own decoding moves some of these photos' top
    class (bird/0000.jpg: bird under Pillow's, fruit_veg under TensorFlow's, which trained the model)."""
    from dlkit_runtime.images import decode

    return decode(path).astype(np.float32)[None]


def test_demo_runs_the_photo_model(tmp_path):
    """`dlkit demo --model mobilenet`: every stage on the photo model, its table's figures from real photos."""
    result = CliRunner().invoke(cli, ["demo", "--model", "mobilenet", "--out", str(tmp_path), "--json"])
    data = json.loads(result.stdout)
    rows = {r["name"]: r for r in data["rows"]}
    assert rows["onnx float"]["accuracy"] == pytest.approx(rows["keras"]["accuracy"], abs=0.001)
    assert rows["keras"]["accuracy"] - rows["onnx int8"]["accuracy"] <= 0.02  # the bound of the int8 test above
    assert rows["onnx int8"]["size_bytes"] <= 0.45 * rows["onnx float"]["size_bytes"]
    assert Path(data["bundle"]).is_dir() and Path(data["report"]).is_file()
    assert result.exit_code == (0 if data["passed"] else 4)
