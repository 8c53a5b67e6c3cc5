"""Images as model inputs: decoding, size, layout, channels and the export's preprocessing hints
(`dlkit.preprocessing`: `scale`, `mean`, `std`).

With Pillow installed (`pip install pillow`, or `dlkit[images]`; a bundle for an image model ships it), `decode`
reads what cameras and phones write: JPEG (turned upright by its EXIF orientation, and decoded to the values
TensorFlow's decoder gives, which Keras models are trained on: `dlkit_runtime.jpeg`), PNG of any bit depth and colour
type, BMP, GIF, WebP and TIFF, and resizes the picture to the model's input. Without Pillow, the bare runtime still
reads 8-bit PNG with the small decoder here (numpy and zlib only) at the model's own size: a device without Pillow
can try a model on the PNG files dlkit's examples use, and any other format names the package that reads it.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from dlkit_runtime import jpeg
from dlkit_runtime.errors import InvalidInputError, MissingDependencyError
from dlkit_runtime.tensors import TensorInfo

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")  # what `decode` reads (Pillow)
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # PNG colour type -> channels (gray, RGB, gray+alpha, RGBA)


def read_png(path: str | os.PathLike | bytes) -> np.ndarray:
    """Decodes an 8-bit, non-interlaced PNG.

    Args:
        path: the `.png` file, or its bytes (a picture received over the network).

    Returns:
        uint8 pixels, (H, W) for grayscale, (H, W, C) otherwise (C is 2, 3 or 4).

    Raises:
        InvalidInputError: not a PNG, or a kind this decoder does not read (palette, 16-bit, interlaced).
    """
    path, data = _named(path)
    data = data if data is not None else path.read_bytes()
    if not data.startswith(_SIGNATURE):
        raise InvalidInputError(f"'{path}' is not a PNG file; give a .png, .npy or .npz file")
    pos, header, idat = len(_SIGNATURE), None, []
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if header is None or not idat:
        raise InvalidInputError(f"'{path}' is a damaged PNG (no IHDR or IDAT chunk)")
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in _CHANNELS or interlace:
        raise InvalidInputError(f"'{path}' is a PNG this decoder does not read (bit depth {depth}, colour type {colour}, "
                                f"interlace {interlace}); save it as 8-bit gray or RGB, or convert it to .npy")
    channels = _CHANNELS[colour]
    try:
        raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8)
        rows = raw.reshape(height, 1 + width * channels)
    except (zlib.error, ValueError) as err:
        raise InvalidInputError(f"'{path}' is a damaged PNG ({err})") from err
    pixels = _unfilter(rows[:, 1:].astype(np.int32), rows[:, 0], channels)
    return pixels.reshape(height, width) if channels == 1 else pixels.reshape(height, width, channels)


def _unfilter(rows: np.ndarray, filters: np.ndarray, bpp: int) -> np.ndarray:
    out = np.zeros_like(rows)
    prev = np.zeros(rows.shape[1], np.int32)
    for y, kind in enumerate(filters):
        line = rows[y]
        if kind == 0:
            cur = line
        elif kind == 1:  # Sub: running sum per channel
            cur = np.cumsum(line.reshape(-1, bpp), axis=0).reshape(-1) % 256
        elif kind == 2:  # Up
            cur = (line + prev) % 256
        elif kind in (3, 4):  # Average, Paeth: each byte depends on the one to its left
            cur = line.copy()
            for i in range(len(cur)):
                left = cur[i - bpp] if i >= bpp else 0
                up, corner = prev[i], (prev[i - bpp] if i >= bpp else 0)
                if kind == 3:
                    cur[i] = (cur[i] + (left + up) // 2) % 256
                else:
                    p = left + up - corner
                    pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                    pred = left if pa <= pb and pa <= pc else (up if pb <= pc else corner)
                    cur[i] = (cur[i] + pred) % 256
        else:
            raise InvalidInputError(f"PNG row {y} has an unknown filter type {kind}; the file is damaged")
        out[y] = prev = cur
    return out.astype(np.uint8)


def decode(path: str | os.PathLike | bytes, info: TensorInfo | None = None, metadata: Mapping[str, Any] | None = None,
           *, dct_method: str = "INTEGER_FAST") -> np.ndarray:
    """An image file's pixels, uint8 (H, W) or (H, W, C), resized to `info`'s fixed height and width (Pillow).

    16-bit PNG and TIFF keep their top 8 bits; palette, CMYK and other modes become RGB (grayscale stays gray).

    Args:
        path: the image file, or its bytes (a picture received over the network: the server's).
        info, metadata: the model input it is for, and the model's dlkit metadata (layout): the size to resize to.
        dct_method: how a JPEG is decoded, as `tf.io.decode_jpeg` names it. "INTEGER_FAST": TensorFlow's default
            (what `keras.utils.image_dataset_from_directory` trains on), the same values as TensorFlow for the
            JPEGs `dlkit_runtime.jpeg` covers. "INTEGER_ACCURATE": Pillow's default (`keras.utils.load_img`).
            Defaults to "INTEGER_FAST".

    Raises:
        InvalidInputError: a missing, damaged or unreadable image, an unknown dct_method. MissingDependencyError:
            not a PNG and Pillow is not installed.
    """
    path, data = _named(path)
    if dct_method not in jpeg.DCT_METHODS:
        raise InvalidInputError(f"dct_method {dct_method!r} is not one of {', '.join(jpeg.DCT_METHODS)}; give "
                                "INTEGER_FAST (TensorFlow's decoding) or INTEGER_ACCURATE (Pillow's)")
    try:
        from PIL import Image, ImageOps, UnidentifiedImageError
    except ImportError:
        if (data[:8] != _SIGNATURE) if data is not None else path.suffix.lower() != ".png":
            raise MissingDependencyError(f"reading '{path.name}' needs Pillow, which is not installed (dlkit_runtime "
                                         "alone reads 8-bit PNG); install it with: pip install pillow") from None
        return read_png(path if data is None else data)
    size = None
    if info is not None and len(info.shape) in (3, 4):
        _, height, width, _ = geometry(info, metadata or {})
        size = (width, height) if isinstance(height, int) and isinstance(width, int) else None
    try:
        with Image.open(path if data is None else io.BytesIO(data)) as opened:
            fast = jpeg.decode_fast(opened) if dct_method == "INTEGER_FAST" else None
            image = ImageOps.exif_transpose(opened) if fast is None else _upright(Image.fromarray(fast), opened)
            if image.mode in ("I;16", "I;16B", "I;16L", "I", "I;16N"):  # 16-bit or 32-bit integer gray
                deep = np.asarray(image).astype(np.uint32)
                image = Image.fromarray((deep >> (8 if deep.max() < 65536 else 24)).astype(np.uint8), "L")
            elif image.mode not in ("L", "RGB"):
                image = image.convert("L" if image.mode in ("1", "LA", "La") else "RGB")
            if size is not None and image.size != size:
                image = image.resize(size, Image.BILINEAR)
            pixels = np.asarray(image)
    except FileNotFoundError:
        raise InvalidInputError(f"image '{path}' does not exist") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise InvalidInputError(f"Pillow cannot read '{path}' ({type(err).__name__}: {str(err)[:120]}); give a "
                                "JPEG, PNG, BMP, GIF, WebP or TIFF image") from err
    return pixels


def _named(source: str | os.PathLike | bytes) -> tuple[Path, bytes | None]:
    """A picture as (the path its messages name, its bytes when it came as bytes, else None)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return Path("picture"), bytes(source)
    return Path(source), None


def _upright(image: Any, opened: Any) -> Any:
    """`image`, decoded from `opened`, turned upright by Pillow's `exif_transpose` reading `opened`'s metadata."""
    from PIL import ImageOps

    image.info.update({k: v for k, v in opened.info.items() if k in ("exif", "xmp", "XML:com.adobe.xmp")})
    return ImageOps.exif_transpose(image)


def geometry(info: TensorInfo, metadata: Mapping[str, Any]) -> tuple[str, Any, Any, Any]:
    """(layout, height, width, channels) of an image-like input: NHWC, NCHW (a 4-D input) or NHW (3-D).

    Raises:
        InvalidInputError: the input does not take an image.
    """
    layout = (metadata.get("input_layout") or {}).get(info.name) if isinstance(metadata.get("input_layout"), dict) else None
    shape = info.shape
    if len(shape) == 4:
        layout = layout if layout in ("NHWC", "NCHW") else ("NCHW" if shape[1] in (1, 3, 4) and shape[-1] not in (1, 3, 4)
                                                           else "NHWC")
        height, width, want = (shape[1], shape[2], shape[3]) if layout == "NHWC" else (shape[2], shape[3], shape[1])
        return layout, height, width, want
    if len(shape) == 3:
        return "NHW", shape[1], shape[2], 1
    raise InvalidInputError(f"input '{info.name}' {info.dtype} {info.shape_text()} does not take an image; give "
                            "a .npy or .npz file")



def image_input(image: np.ndarray, info: TensorInfo, metadata: Mapping[str, Any]) -> np.ndarray:
    """Turns decoded pixels into a batch of one for `info`, as the export's metadata describes.

    The layout comes from `input_layout` (else a last axis of 1, 3 or 4 means NHWC); channels are converted (gray <->
    RGB, alpha dropped); `preprocessing` hints `scale`, `mean`, `std` are applied (a warning when there are none).

    Raises:
        InvalidInputError: the input is not an image-like tensor, or the picture's size differs from it.
    """
    layout, height, width, want = geometry(info, metadata)
    pixels = _channels(image if image.ndim == 3 else image[..., None], want if isinstance(want, int) else 3)
    for axis, (dim, size) in enumerate(zip((height, width), pixels.shape[:2])):
        if isinstance(dim, int) and dim != size:
            raise InvalidInputError(f"input '{info.name}' wants {height}x{width} images, the picture is "
                                    f"{pixels.shape[0]}x{pixels.shape[1]}; resize it first (with Pillow installed, "
                                    "dlkit resizes it: pip install pillow)")
    if np.dtype(info.dtype).kind != "f":  # a model that takes raw pixels does its own preprocessing
        x = pixels.astype(info.dtype)
        return np.ascontiguousarray((x.transpose(2, 0, 1) if layout == "NCHW" else x[..., 0] if layout == "NHW" else x)[None])
    x = pixels.astype(np.float32)
    hints = metadata.get("preprocessing") if isinstance(metadata.get("preprocessing"), dict) else {}
    if not any(k in hints for k in ("scale", "mean", "std", "in_model")):  # in_model: it prepares raw pixels itself
        warnings.warn(f"the model has no preprocessing hints (dlkit.preprocessing); input '{info.name}' gets raw 0-255 "
                      "pixel values", UserWarning, stacklevel=2)
    x = x * float(hints.get("scale", 1.0))
    x = (x - np.asarray(hints.get("mean", 0.0), np.float32)) / np.asarray(hints.get("std", 1.0), np.float32)
    if layout == "NCHW":
        x = x.transpose(2, 0, 1)
    elif layout == "NHW":
        x = x[..., 0]
    return np.ascontiguousarray(x[None].astype(info.dtype))


def _channels(pixels: np.ndarray, want: int) -> np.ndarray:
    have = pixels.shape[-1]
    if have in (2, 4):  # drop alpha
        pixels, have = pixels[..., :-1], have - 1
    if have == want:
        return pixels
    if have == 1 and want == 3:
        return np.repeat(pixels, 3, axis=-1)
    if have == 3 and want == 1:  # ITU-R BT.601 luma, as PIL's convert("L")
        return (pixels @ np.array([0.299, 0.587, 0.114]))[..., None].round().astype(np.uint8)
    raise InvalidInputError(f"the picture has {have} channel(s) and the model wants {want}; convert it to .npy")
