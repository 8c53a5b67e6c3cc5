"""PNG decoding (every row filter, gray, RGB, alpha) and image -> model input (layout, channels, preprocessing)."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from dlkit_runtime import InvalidInputError, Model
from dlkit_runtime.datafiles import read_inputs
from dlkit_runtime.images import image_input, read_png
from dlkit_runtime.tensors import TensorInfo

_COLOUR = {1: 0, 2: 4, 3: 2, 4: 6}


def write_png(path, pixels: np.ndarray, filters=(0, 1, 2, 3, 4), depth=8, interlace=0):
    """A PNG encoder for the tests, cycling through the five row filters so the decoder meets each of them."""
    pixels = pixels if pixels.ndim == 3 else pixels[..., None]
    height, width, channels = pixels.shape
    raw = pixels.reshape(height, width * channels).astype(np.int32)
    out, prev = bytearray(), np.zeros(width * channels, np.int32)
    for y in range(height):
        kind, line = filters[y % len(filters)], raw[y]
        left = np.concatenate([np.zeros(channels, np.int32), line[:-channels]])
        corner = np.concatenate([np.zeros(channels, np.int32), prev[:-channels]])
        if kind == 4:
            p = left + prev - corner
            pa, pb, pc = abs(p - left), abs(p - prev), abs(p - corner)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, corner))
        else:
            pred = [0 * line, left, prev, (left + prev) // 2][kind]
        out += bytes([kind]) + ((line - pred) % 256).astype(np.uint8).tobytes()
        prev = line

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, depth, _COLOUR[channels], 0, 0, interlace)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(out)))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("shape", [(28, 28), (9, 7, 2), (9, 7, 3), (5, 6, 4)], ids=["gray", "gray-alpha", "rgb", "rgba"])
def test_read_png_every_filter(tmp_path, shape):
    pixels = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    np.testing.assert_array_equal(read_png(write_png(tmp_path / "x.png", pixels)), pixels)


@pytest.mark.parametrize("kwargs, match", [({"depth": 16}, "bit depth 16"), ({"interlace": 1}, "interlace 1")])
def test_read_png_unsupported(tmp_path, kwargs, match):
    path = write_png(tmp_path / "x.png", np.zeros((2, 2), np.uint8), **kwargs)
    with pytest.raises(InvalidInputError, match=match):
        read_png(path)


def test_read_png_not_a_png(tmp_path):
    (tmp_path / "x.png").write_bytes(b"GIF89a")
    with pytest.raises(InvalidInputError, match="is not a PNG file"):
        read_png(tmp_path / "x.png")


def test_image_input_layouts_and_preprocessing():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    hints = {"preprocessing": {"scale": 0.5, "mean": 1.0, "std": 2.0}}
    nhwc = image_input(gray, TensorInfo("x", "float32", (None, 3, 4, 1)), hints)
    np.testing.assert_allclose(nhwc[0, ..., 0], (gray * 0.5 - 1) / 2)  # exact in float32 for these values
    nchw = image_input(gray, TensorInfo("x", "float32", (None, 3, 3, 4)), {**hints, "input_layout": {"x": "NCHW"}})
    assert nchw.shape == (1, 3, 3, 4) and np.array_equal(nchw[0, 0], nchw[0, 2])  # gray repeated to RGB
    rgb = np.zeros((3, 4, 3), np.uint8)
    rgb[..., 1] = 100
    luma = image_input(rgb, TensorInfo("x", "uint8", (None, 3, 4, 1)), {})
    assert luma.dtype == np.uint8 and luma.shape == (1, 3, 4, 1) and luma.max() == 59  # 0.587 * 100, rounded
    assert image_input(gray, TensorInfo("x", "float32", (None, 3, 4)), hints).shape == (1, 3, 4)


def test_image_input_errors():
    with pytest.raises(InvalidInputError, match="wants 28x28 images, the picture is 3x4; resize it first"):
        image_input(np.zeros((3, 4), np.uint8), TensorInfo("x", "float32", (None, 28, 28, 1)), {"preprocessing": {"scale": 1}})
    with pytest.raises(InvalidInputError, match="does not take an image"):
        image_input(np.zeros((3, 4), np.uint8), TensorInfo("x", "float32", (None, 12)), {})


def test_no_hints_warns():
    with pytest.warns(UserWarning, match="no preprocessing hints"):
        image_input(np.zeros((3, 4), np.uint8), TensorInfo("x", "float32", (None, 3, 4, 1)), {})


def test_mnist_png_through_the_exported_cnn(cnn_onnx, mnist_test, tmp_path):
    images, labels = mnist_test
    model = Model(cnn_onnx)
    for i in range(3):
        x = read_inputs(write_png(tmp_path / f"{i}.png", images[i]), model)
        assert x.shape == (1, 28, 28, 1) and x.max() <= 1.0  # the export's hint scale 1/255 was applied
        assert model.classify(x, 1)[0][0].label == str(labels[i])


def _photo_of(image: np.ndarray, path, **save):
    """A digit as a camera or phone would store it: RGB, larger than the model's input, in the given format."""
    from PIL import Image

    Image.fromarray(image).convert("RGB").resize((96, 96), Image.BICUBIC).save(path, **save)
    return path


def test_jpeg_and_16_bit_png_through_pillow(cnn_onnx, mnist_test, tmp_path):
    """A JPEG (resized from 96x96, EXIF-free) and a 16-bit grayscale PNG of each digit give the top-1 class its
    .npy gives (the trained CNN's margins on these digits are far above JPEG's and resizing's noise)."""
    from PIL import Image

    images, labels = mnist_test
    model = Model(cnn_onnx)
    for i in range(4):
        expected = model.classify(images[i][None, ..., None].astype(np.float32) / 255, 1)[0][0].label
        jpeg = read_inputs(_photo_of(images[i], tmp_path / f"{i}.jpg", quality=90), model)
        deep = tmp_path / f"{i}.png"
        Image.fromarray(images[i].astype(np.uint16) * 257).save(deep)  # 16-bit: Pillow's I;16
        png16 = read_inputs(deep, model)
        assert jpeg.shape == png16.shape == (1, 28, 28, 1) and 0 <= jpeg.min() and jpeg.max() <= 1.0
        np.testing.assert_allclose(png16[0, ..., 0], images[i] / 255, atol=1e-6)  # the top 8 bits, exactly
        assert model.classify(jpeg, 1)[0][0].label == model.classify(png16, 1)[0][0].label == expected == str(labels[i])


def test_without_pillow_png_still_reads_and_jpeg_names_the_package(cnn_onnx, mnist_test, tmp_path):
    """The bare runtime (no Pillow; blocked in a fresh interpreter) reads 8-bit PNG and names Pillow for a JPEG."""
    import subprocess
    import sys

    images, _ = mnist_test
    png = write_png(tmp_path / "d.png", images[0])
    jpeg = _photo_of(images[0], tmp_path / "d.jpg")
    script = ("import sys; sys.modules['PIL'] = None\n"
              "from dlkit_runtime import Model, MissingDependencyError\nfrom dlkit_runtime.datafiles import read_inputs\n"
              f"m = Model({str(cnn_onnx)!r})\nprint(read_inputs({str(png)!r}, m).shape)\n"
              f"try:\n    read_inputs({str(jpeg)!r}, m)\nexcept MissingDependencyError as err:\n    print(err.exit_code, err)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == "(1, 28, 28, 1)"
    assert out[1].startswith("3 reading 'd.jpg' needs Pillow") and "pip install pillow" in out[1]



def test_a_picture_as_bytes_decodes_as_its_file(tmp_path):
    """The server decodes a picture from the bytes it received, with no temporary file: the same pixels as the file,
    for a JPEG of the photo set (TensorFlow's decoding) and an 8-bit PNG (Pillow's, and dlkit's own reader); bytes
    that are no picture are a one-line error."""
    from pathlib import Path

    from dlkit_runtime.images import decode

    photo = sorted((Path(__file__).resolve().parents[2] / "sample_models/data/photos/test/bird").glob("*.jpg"))[0]
    info = TensorInfo("image", "float32", ("N", 96, 96, 3))
    np.testing.assert_array_equal(decode(photo.read_bytes(), info), decode(photo, info))
    pixels = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    png = write_png(tmp_path / "x.png", pixels)
    np.testing.assert_array_equal(decode(png.read_bytes()), pixels)
    np.testing.assert_array_equal(read_png(png.read_bytes()), pixels)
    with pytest.raises(InvalidInputError, match="Pillow cannot read 'picture'"):
        decode(b"not a picture")
