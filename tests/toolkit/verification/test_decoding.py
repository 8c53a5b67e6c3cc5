"""Decoding that matches training: dlkit's JPEG values against TensorFlow's decoder (which
`keras.utils.image_dataset_from_directory` trained the reference photo model on), on the reference photos and on
every kind of JPEG Pillow writes, and `dlkit verify`'s report of what still differs, with real TensorFlow."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import dlkit
from dlkit.cli import cli
from dlkit.errors import InvalidInputError
from dlkit_runtime.images import decode

ROOT = Path(__file__).resolve().parents[3]
KERAS = ROOT / "sample_models" / "trained" / "mobilenet.keras"
TEST_PHOTOS = sorted((ROOT / "sample_models" / "data" / "photos" / "test").glob("*/*.jpg"))


def _tf(path: Path, channels: int = 3, **options) -> np.ndarray:
    import tensorflow as tf

    data = tf.io.read_file(str(path))
    if options:
        return tf.io.decode_jpeg(data, channels=channels, **options).numpy()
    return tf.io.decode_image(data, channels=channels, expand_animations=False).numpy()


def test_the_reference_photos_decode_to_tensorflows_values():
    """150 of the 1,200 test photos (128x128, 4:2:0): dlkit's values are TensorFlow's default decode's, bit for bit.
    Pillow's own decoding (`dct_method="INTEGER_ACCURATE"`, what keras.utils.load_img gives) equals TensorFlow's
    accurate IDCT and differs from its default by the IDCT alone: measured max 9 levels, mean 0.99, 65% of the
    values (on all 1,200 and on these 150 alike); the bounds keep a margin for other libjpeg-turbo builds."""
    files = TEST_PHOTOS[::8]
    ours = np.stack([decode(f) for f in files])
    tensorflow = np.stack([_tf(f) for f in files])
    np.testing.assert_array_equal(ours, tensorflow)
    pillow = np.stack([decode(f, dct_method="INTEGER_ACCURATE") for f in files])
    np.testing.assert_array_equal(pillow, np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files]))
    np.testing.assert_array_equal(pillow, np.stack([_tf(f, dct_method="INTEGER_ACCURATE") for f in files]))
    diff = np.abs(pillow.astype(int) - tensorflow)
    assert 5 <= diff.max() <= 12 and 0.8 <= diff.mean() <= 1.2 and 0.55 <= (diff > 0).mean() <= 0.75


@pytest.mark.parametrize("subsampling", ["4:4:4", "4:2:2", "4:2:0"])
@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
def test_every_jpeg_pillow_writes_decodes_as_tensorflow(subsampling, progressive, tmp_path):
    """Odd and even sizes (the chroma's last column and row are edge cases of libjpeg's upsampling), baseline and
    progressive, each chroma subsampling, and grayscale: the same values as tf.io.decode_jpeg, all of them."""
    photo = Image.open(TEST_PHOTOS[0]).convert("RGB")
    for size in ((131, 97), (64, 33), (9, 8)):
        path = tmp_path / f"{size[0]}x{size[1]}.jpg"
        photo.resize(size, Image.BICUBIC).save(path, quality=85, subsampling=subsampling, progressive=progressive)
        np.testing.assert_array_equal(decode(path), _tf(path), err_msg=str(size))
        gray = tmp_path / f"gray{size[0]}.jpg"
        photo.resize(size).convert("L").save(gray, quality=85, progressive=progressive)
        np.testing.assert_array_equal(decode(gray), _tf(gray, channels=1)[..., 0], err_msg=f"gray {size}")


def test_jpegs_outside_the_fast_path_decode_as_pillow_does(tmp_path):
    """A JPEG smaller than 8 px (libjpeg's upsampling edge cases) and a CMYK one are left to Pillow's decoding."""
    photo = Image.open(TEST_PHOTOS[1]).convert("RGB")
    photo.resize((6, 5)).save(tmp_path / "tiny.jpg", subsampling="4:2:0")
    photo.convert("CMYK").save(tmp_path / "cmyk.jpg")
    for name in ("tiny.jpg", "cmyk.jpg"):
        with Image.open(tmp_path / name) as opened:
            np.testing.assert_array_equal(decode(tmp_path / name), np.asarray(opened.convert("RGB")), err_msg=name)


def test_exif_orientation_still_turns_the_picture(tmp_path):
    """A phone photo (EXIF orientation 6, shot rotated) comes out upright on the TensorFlow-valued path too."""
    photo = Image.open(TEST_PHOTOS[2]).convert("RGB").resize((96, 64))
    exif = Image.Exif()
    exif[0x0112] = 6
    photo.save(tmp_path / "plain.jpg", quality=90)
    photo.save(tmp_path / "turned.jpg", quality=90, exif=exif.tobytes())
    plain, turned = decode(tmp_path / "plain.jpg"), decode(tmp_path / "turned.jpg")
    assert plain.shape == (64, 96, 3) and turned.shape == (96, 64, 3)
    np.testing.assert_array_equal(turned, np.rot90(plain, k=-1))
    np.testing.assert_array_equal(plain, _tf(tmp_path / "plain.jpg"))


def test_an_unknown_dct_method_names_the_two():
    with pytest.raises(InvalidInputError, match="INTEGER_FAST.*INTEGER_ACCURATE"):
        decode(TEST_PHOTOS[0], dct_method="FLOAT")


def _folder(tmp_path: Path, per_class: int, size: tuple[int, int] | None = None) -> Path:
    """`per_class` test photos of each class, copied (or re-saved at `size`, as a camera's bigger picture)."""
    folder = tmp_path / "photos"
    for cls in sorted({f.parent.name for f in TEST_PHOTOS}):
        (folder / cls).mkdir(parents=True)
        for photo in [f for f in TEST_PHOTOS if f.parent.name == cls][:per_class]:
            if size is None:
                shutil.copy(photo, folder / cls / photo.name)
            else:
                Image.open(photo).resize(size, Image.BICUBIC).save(folder / cls / photo.name, quality=92)
    return folder


def test_verify_shows_identical_pixels_on_the_reference_photos(photo_onnx_file, tmp_path):
    """verify from Keras on 48 reference photos: every value compared is TensorFlow's, so the reference's accuracy
    is the same both ways and equals the one verify measured; in the text, --json and the report."""
    folder = _folder(tmp_path, 12)
    run = CliRunner().invoke(cli, ["verify", str(KERAS), str(photo_onnx_file), "--data", str(folder), "--json",
                                   "--report", str(tmp_path / "report.html")])
    assert run.exit_code == 0, run.stderr
    data = json.loads(run.stdout)
    check = data["decoding"]
    assert (check["samples"], check["skipped"], check["identical"]) == (48, 0, True)
    assert check["max_abs_level"] == check["mean_abs_level"] == check["fraction_differing"] == 0.0
    assert check["max_abs_output_difference"] == 0.0 and check["top1_agreement"] == 1.0
    reference = data["candidates"][0]["outputs"][0]["reference_accuracy"]
    assert check["accuracy_dlkit"] == check["accuracy_tensorflow"] == pytest.approx(reference, abs=1e-9)
    html = (tmp_path / "report.html").read_text()
    assert "<h2>Decoding</h2>" in html and "image_dataset_from_directory" in html
    text = CliRunner().invoke(cli, ["verify", str(KERAS), str(photo_onnx_file), "--data", str(folder)])
    line = next(x for x in text.stdout.splitlines() if x.startswith("decoding: "))
    assert "on 48 images: identical" in line and f"{100 * reference:.2f}% (dlkit) vs" in line, line


def test_verify_reports_what_differs_and_the_reference_both_ways(photo_onnx_file, tmp_path):
    """The same 48 photos as 200x200 pictures: dlkit resizes with Pillow (antialiased bilinear), TensorFlow's
    pipeline with tf.image.resize (bilinear, no antialiasing), so values differ. The figures are recomputed here:
    Keras's top-1 accuracy on TensorFlow's own pipeline, and on what dlkit feeds (verify's reference accuracy)."""
    import keras
    import tensorflow as tf

    folder = _folder(tmp_path, 12, size=(200, 200))
    result = dlkit.verify(KERAS, [photo_onnx_file], folder)
    check = result.decoding
    assert check.samples == 48 and not check.identical and check.output == "logits"
    assert check.fraction_differing > 0.5 and 10 < check.max_abs_level < 128 and 0.2 < check.mean_abs_level < 5
    files = sorted(folder.glob("*/*.jpg"))
    labels = np.array([sorted({f.parent.name for f in files}).index(f.parent.name) for f in files])
    pixels = np.stack([tf.image.resize(_tf(f), (128, 128), method="bilinear").numpy() for f in files])
    model = keras.saving.load_model(KERAS)
    # model.predict, as model.evaluate runs it (a plain model(pixels) call here gives other logits, up to 2.7 apart)
    tensorflow_accuracy = float((model.predict(pixels, verbose=0).argmax(axis=1) == labels).mean())
    assert check.accuracy_tensorflow == pytest.approx(tensorflow_accuracy, abs=1.5 / 48)  # a near-tie's batch order
    assert check.accuracy_dlkit == pytest.approx(result.candidates[0].outputs[0].reference_accuracy, abs=1e-9)
    assert 0.8 <= check.top1_agreement <= 1.0 and check.max_abs_output_difference > 0
    assert f"{100 * check.fraction_differing:.2f}% of values differ" in check.summary
    assert result.to_dict()["decoding"]["fraction_differing"] == check.fraction_differing


def test_no_keras_reference_or_no_image_folder_changes_nothing(photo_onnx_file, tmp_path):
    """An ONNX reference, or arrays instead of a folder: no decoding figures, no `decoding` key."""
    folder = _folder(tmp_path, 2)
    by_onnx = dlkit.verify(photo_onnx_file, [photo_onnx_file], folder)
    assert by_onnx.decoding is None and "decoding" not in by_onnx.to_dict()
    arrays = tmp_path / "x.npy"
    np.save(arrays, np.stack([decode(f) for f in sorted(folder.glob("*/*.jpg"))]).astype(np.float32))
    by_array = dlkit.verify(KERAS, [photo_onnx_file], arrays)
    assert by_array.num_samples == 8 and by_array.decoding is None and "decoding" not in by_array.to_dict()
    text = CliRunner().invoke(cli, ["verify", str(KERAS), str(photo_onnx_file), "--data", str(arrays)])
    assert text.exit_code == 0 and "decoding" not in text.stdout, text.stdout



def test_gray_png_digits_decode_alike_for_a_keras_cnn(onnx_exports, mnist_test, tmp_path):
    """A gray model fed PNGs through its `scale` hint: PNG has one decoding, so dlkit's and TensorFlow's pixels are
    the same and the CNN's accuracy on the 40 digits is the same both ways."""
    import onnx

    images, labels = mnist_test
    for i in range(40):
        (tmp_path / "digits" / str(labels[i])).mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i]).save(tmp_path / "digits" / str(labels[i]) / f"{i}.png")
    model = onnx.load(str(onnx_exports["cnn"]))
    model.metadata_props.add(key="dlkit.preprocessing", value=json.dumps({"scale": 1 / 255}))
    onnx.save(model, str(tmp_path / "cnn.onnx"))
    cnn = ROOT / "sample_models" / "trained" / "cnn.keras"
    result = dlkit.verify(cnn, [tmp_path / "cnn.onnx"], tmp_path / "digits")
    check, accuracy = result.decoding, result.candidates[0].outputs[0].reference_accuracy
    assert (check.samples, check.identical, check.top1_agreement) == (40, True, 1.0)
    assert check.accuracy_dlkit == check.accuracy_tensorflow == accuracy >= 0.95


def test_a_cameras_mpo_jpeg_decodes_as_tensorflow(tmp_path):
    """MPO (a JPEG with a second picture after it, as some cameras write): TensorFlow decodes the first picture, so
    does dlkit, with the same values."""
    photo = Image.open(TEST_PHOTOS[4]).convert("RGB")
    photo.save(tmp_path / "camera.jpg", "MPO", save_all=True, append_images=[photo.rotate(90)])
    assert Image.open(tmp_path / "camera.jpg").format == "MPO"
    np.testing.assert_array_equal(decode(tmp_path / "camera.jpg"), _tf(tmp_path / "camera.jpg"))
