"""Images over HTTP: a BYTES input holding encoded pictures (base64 strings in JSON, raw bytes in binary data), or
a whole request body sent as `Content-Type: image/jpeg` (or image/png, ...), fed to a model with one image input as
`dlkit run photo.jpg` feeds it: decoded, turned upright, resized, laid out and scaled as the model's metadata says,
by `dlkit_runtime.images` itself (`decode`, from a temporary file, and `image_input`): the same values as `dlkit run`.

Limits come before any decoding: the body's size (the server's body limit), then the pixels each picture's header
declares, summed over the request (`Settings.max_image_pixels`, 413 above it): a 100-byte PNG that says 20000x20000
is refused without allocating its 1.2 GB. JPEG, PNG, WebP, GIF and BMP headers are read here; anything else is a 400.
Pillow is imported when the first picture arrives; without it only PNG is read (at the model's size), and another
format gets 415 naming the package.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import struct
from typing import Any, Sequence
from urllib.parse import parse_qs

import numpy as np

from dlkit_runtime.errors import InvalidInputError, MissingDependencyError
from dlkit_runtime.images import decode, geometry, image_input
from dlkit_runtime.serving.protocol import Request, RequestError
from dlkit_runtime.tensors import TensorInfo

FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")  # whose headers `image_size` reads; Pillow opens only these


def image_size(data: bytes) -> tuple[str, int, int] | None:
    """(format, width, height) from an encoded picture's header, without decoding it; None for another format."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        return ("PNG",) + struct.unpack(">II", data[16:24])
    if data[:3] == b"\xff\xd8\xff":
        return _jpeg_size(data)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return ("GIF",) + struct.unpack("<HH", data[6:10])
    if data[:2] == b"BM" and len(data) >= 26:
        if struct.unpack("<I", data[14:18])[0] == 12:  # OS/2 BITMAPCOREHEADER
            return ("BMP",) + struct.unpack("<HH", data[18:22])
        width, height = struct.unpack("<ii", data[18:26])
        return "BMP", abs(width), abs(height)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        kind = data[12:16]
        if kind == b"VP8X":
            return "WEBP", 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
        if kind == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return "WEBP", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if kind == b"VP8 ":
            return "WEBP", *(v & 0x3FFF for v in struct.unpack("<HH", data[26:30]))
    return None


def _jpeg_size(data: bytes) -> tuple[str, int, int] | None:
    """The frame header's (SOFn) size, walking the segments before it; None when there is none."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # no length
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header came first
            return None
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and pos + 9 <= len(data):
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            return "JPEG", width, height
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return None


def image_request(body: bytes, content_type: str, query: bytes, inputs: Sequence[TensorInfo],
                  outputs: Sequence[str]) -> Request:
    """A request whose body is one picture (`Content-Type: image/...`): the model's one input, and every output as
    JSON, or with `?classification=k` the first output's top k classes.

    Raises:
        RequestError: 400 for a model without exactly one input or a bad query.
    """
    if len(inputs) != 1:
        raise RequestError(400, f"a {content_type} body feeds a model with one input; this one takes "
                                f"{[i.name for i in inputs]}: send a JSON infer request")
    picture = np.empty(1, dtype=object)
    picture[0] = body
    classes = {}
    asked = parse_qs(query.decode("latin-1")).get("classification")
    if asked:
        if not asked[-1].isdigit() or int(asked[-1]) < 1:
            raise RequestError(400, f"classification={asked[-1]!r}: give the number of top classes, e.g. "
                                    "?classification=3")
        classes[outputs[0]] = int(asked[-1])
    return Request({inputs[0].name: picture}, {outputs[0]: False} if classes else None, False, None, classes)


def image_feeds(feeds: dict[str, np.ndarray], inputs: Sequence[TensorInfo], metadata: dict, max_pixels: int,
                max_elements: int) -> dict[str, np.ndarray]:
    """`feeds` with each BYTES input (an object array of encoded pictures) decoded into the model's input batch.
    Runs off the event loop: decoding a photo takes milliseconds.

    Raises:
        RequestError: 413 for pictures over `max_pixels` together; 415 without Pillow; 400 for an input that takes
            no images, bad base64, bytes that are no JPEG, PNG, WebP, GIF or BMP, or a picture Pillow cannot decode.
    """
    infos = {i.name: i for i in inputs}
    hints = metadata.get("preprocessing")
    if not isinstance(hints, dict) or not hints:  # raw 0-255 pixels, as image_input gives them without a warning
        metadata = {**metadata, "preprocessing": {"scale": 1.0}}
    out = dict(feeds)
    for name, values in feeds.items():
        if values.dtype != object or np.dtype(infos[name].dtype).kind in "OSU":
            continue
        info = infos[name]
        try:
            geometry(info, metadata)
        except InvalidInputError:
            raise RequestError(400, f"input '{name}' takes {info.dtype} {info.shape_text()}, not images; send its "
                                    "values as numbers") from None
        pictures = [_raw(v, name, i) for i, v in enumerate(values.reshape(-1))]
        if not pictures:
            raise RequestError(400, f"input '{name}' holds no pictures; send at least one")
        per_sample = math.prod(d for d in info.shape[1:] if isinstance(d, int))
        if len(pictures) * per_sample > max_elements:
            raise RequestError(400, f"input '{name}': {len(pictures)} pictures make {len(pictures) * per_sample} "
                                    f"values, more than the server's limit of {max_elements}")
        sizes = [_checked_size(p, name, i) for i, p in enumerate(pictures)]
        total = sum(w * h for _, w, h in sizes)
        if total > max_pixels:
            big = max(range(len(sizes)), key=lambda i: sizes[i][1] * sizes[i][2])
            raise RequestError(413, f"input '{name}': picture {big} is {sizes[big][1]}x{sizes[big][2]} "
                                    f"({total / 1e6:.1f} megapixels in the request), over the server's limit of "
                                    f"{max_pixels / 1e6:g} megapixels; send smaller pictures")
        batch = [_decode(p, sizes[i][0], info, metadata, max_pixels, name, i) for i, p in enumerate(pictures)]
        try:
            out[name] = np.concatenate(batch)
        except ValueError:
            raise RequestError(400, f"input '{name}': its pictures differ in size and the model's input "
                                    f"{info.shape_text()} does not fix it; send pictures of one size") from None
    return out


def _raw(value: Any, name: str, index: int) -> bytes:
    """A picture's bytes: raw from binary data, base64 from JSON (a data: URL's prefix allowed)."""
    if isinstance(value, bytes):
        return value
    text = value.split(",", 1)[1] if value.startswith("data:") and "," in value else value
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, f"input '{name}': picture {index} is not base64 text; send each picture's bytes "
                                "base64-encoded in JSON, or raw in binary data") from None


def _checked_size(data: bytes, name: str, index: int) -> tuple[str, int, int]:
    size = image_size(data)
    if size is None:
        raise RequestError(400, f"input '{name}': picture {index} is not a JPEG, PNG, WebP, GIF or BMP file (it "
                                f"starts {data[:8]!r}); send one of those")
    return size


def _decode(data: bytes, kind: str, info: TensorInfo, metadata: dict, max_pixels: int, name: str,
            index: int) -> np.ndarray:
    """A picture's pixels for `info`, decoded by `dlkit_runtime.images.decode` as `dlkit run photo.jpg` decodes a
    file (the same values: turned upright, resized, JPEG as TensorFlow decodes it), from the bytes themselves."""
    try:
        from PIL import Image
    except ImportError:
        Image = None
    if Image is not None:
        try:  # Pillow's reading of the header, checked again before it decodes anything
            with Image.open(io.BytesIO(data), formats=FORMATS) as opened:
                width, height = opened.size
        except Exception as err:  # noqa: BLE001  (Pillow raises many kinds on a damaged header; all are the client's)
            raise RequestError(413 if isinstance(err, Image.DecompressionBombError) else 400,
                               f"input '{name}': picture {index} cannot be read ({type(err).__name__}: "
                               f"{str(err)[:120]}); send a whole JPEG, PNG, WebP, GIF or BMP file") from None
        if width * height > max_pixels:
            raise RequestError(413, f"input '{name}': picture {index} is {width}x{height}, over the server's limit "
                                    f"of {max_pixels / 1e6:g} megapixels; send a smaller picture")
    try:
        return image_input(decode(data, info, metadata), info, metadata)
    except MissingDependencyError:
        raise RequestError(415, f"this server reads {kind} pictures with Pillow, which is not installed; install it "
                                "where the server runs: pip install pillow") from None
    except InvalidInputError as err:
        cause = err.__cause__
        detail = f"{type(cause).__name__}: {str(cause)[:120]}" if cause is not None else str(err).replace(
            "'picture'", "the picture")
        raise RequestError(400, f"input '{name}': picture {index} cannot be used ({detail}); send a whole JPEG, PNG, "
                                "WebP, GIF or BMP file") from None
