"""JPEG decoded as TensorFlow decodes it: libjpeg's fast integer IDCT (`JDCT_IFAST`) and fancy (triangle) chroma
upsampling, the default of `tf.io.decode_jpeg` and `tf.io.decode_image` (`dct_method=""`, `fancy_upscaling=True`),
so of `keras.utils.image_dataset_from_directory`.

Pillow decodes with libjpeg's accurate IDCT (`JDCT_ISLOW`): the same pixels as
`tf.io.decode_jpeg(dct_method="INTEGER_ACCURATE")`, up to 9 levels away from TensorFlow's default (the photo set's
1,200 test JPEGs: mean 0.99, 65% of the values). Pillow's only other setting, its draft flag, gives the fast IDCT but
turns fancy upsampling off (81 levels away at colour edges). So here Pillow decodes with the draft flag into YCbCr
(the fast IDCT, chroma repeated), and numpy upsamples the chroma and converts to RGB with libjpeg's own integer
arithmetic (jdsample.c `h2v1_fancy_upsample`/`h2v2_fancy_upsample`, jdcolor.c `ycc_rgb_convert`): on those 1,200
photos, every value equals TensorFlow's.

Files this does not cover (CMYK, Adobe RGB, chroma subsampled other than 2x1 or 2x2, luma not the largest
component, pictures under 8 pixels wide or high) return None, and the caller decodes them with Pillow's default. The
draft flag is not public Pillow API: `decoderconfig` is the (scale, draft) pair `JpegImageFile.draft` sets and
`ImageFile.load` hands to the decoder, unchanged since PIL; tests/toolkit/verification/test_decoding.py pins the
values against TensorFlow's, so a Pillow that changes it fails there, not silently.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DCT_METHODS = ("INTEGER_FAST", "INTEGER_ACCURATE")  # tf.io.decode_jpeg's names: TensorFlow's default, Pillow's
_FIX = lambda x: int(x * 65536 + 0.5)  # noqa: E731  (libjpeg's FIX at SCALEBITS 16)
_X = np.arange(256, dtype=np.int32) - 128
_CR_R = ((_FIX(1.40200) * _X + 32768) >> 16).astype(np.int16)  # jdcolor.c build_ycc_rgb_table
_CB_B = ((_FIX(1.77200) * _X + 32768) >> 16).astype(np.int16)
_CR_G = -_FIX(0.71414) * _X
_CB_G = -_FIX(0.34414) * _X + 32768


def decode_fast(opened: Any) -> np.ndarray | None:
    """The pixels of an opened, not yet loaded Pillow JPEG as `tf.io.decode_jpeg` gives them, uint8 (H, W) or
    (H, W, 3); None for a file this does not cover (see the module), or a Pillow without the draft flag."""
    if getattr(opened, "format", None) not in ("JPEG", "MPO") or opened.mode not in ("L", "RGB") \
            or not hasattr(opened, "decoderconfig"):
        return None
    layers = list(getattr(opened, "layer", None) or [])
    if opened.mode == "RGB" and not _ycbcr(opened, layers):
        return None
    if opened.mode == "RGB":
        opened.draft("YCbCr", None)  # libjpeg writes YCbCr: no colour conversion, no merged upsampling
    if opened.mode not in ("L", "YCbCr"):
        return None
    opened.decoderconfig = (1, 1)  # (scale, draft): the draft flag sets JDCT_FASTEST (= JDCT_IFAST), box upsampling
    pixels = np.asarray(opened)
    if pixels.ndim == 2:
        return pixels
    max_h, max_v = layers[0][1], layers[0][2]
    cb, cr = (_fancy(pixels[..., i], max_h // layers[i][1], max_v // layers[i][2]) for i in (1, 2))
    luma = pixels[..., 0].astype(np.int16)
    rgb = np.empty(pixels.shape, np.uint8)
    for channel, offset in enumerate((_CR_R[cr], ((_CB_G[cb] + _CR_G[cr]) >> 16).astype(np.int16), _CB_B[cb])):
        offset += luma
        rgb[..., channel] = np.clip(offset, 0, 255, out=offset)
    return rgb


def _ycbcr(opened: Any, layers: list) -> bool:
    """A 3-component JPEG libjpeg reads as YCbCr, whose chroma this module upsamples as libjpeg does."""
    if len(layers) != 3 or opened.info.get("adobe_transform", 1) == 0:
        return False
    if [layer[0] for layer in layers] == [82, 71, 66]:  # component ids 'R', 'G', 'B': libjpeg reads RGB
        return False
    max_h, max_v = max(layer[1] for layer in layers), max(layer[2] for layer in layers)
    if (layers[0][1], layers[0][2]) != (max_h, max_v):
        return False
    factors = {(max_h // layer[1], max_v // layer[2]) for layer in layers[1:]}
    exact = all(max_h % layer[1] == 0 and max_v % layer[2] == 0 for layer in layers[1:])
    return exact and factors <= {(1, 1), (2, 1), (2, 2)} and min(opened.size) >= 8


def _fancy(plane: np.ndarray, fx: int, fy: int) -> np.ndarray:
    """A chroma plane repeated `fx` x `fy` by the draft decode, upsampled again as libjpeg's fancy upsampling does,
    with edge samples repeated (libjpeg's context rows and its first and last column cases)."""
    height, width = plane.shape
    if (fx, fy) == (1, 1):
        return plane
    small = plane[::fy, ::fx].astype(np.int16)  # the component's own samples; every sum below fits int16
    if fy == 1:  # h2v1: 3/4 nearer + 1/4 further, rounding 1 and 2
        sums, shift, bias = small, 2, (1, 2)
    else:  # h2v2: vertical 3:1 sums, then horizontal, rounding 8 and 7
        rows = np.pad(small, ((1, 1), (0, 0)), mode="edge")
        sums = np.empty((2 * small.shape[0], small.shape[1]), np.int16)
        sums[0::2] = 3 * small + rows[:-2]
        sums[1::2] = 3 * small + rows[2:]
        shift, bias = 4, (8, 7)
    padded = np.pad(sums, ((0, 0), (1, 1)), mode="edge")
    out = np.empty((sums.shape[0], 2 * sums.shape[1]), np.int16)
    near = 3 * sums
    out[:, 0::2] = (near + padded[:, :-2] + bias[0]) >> shift
    out[:, 1::2] = (near + padded[:, 2:] + bias[1]) >> shift
    return out[:height, :width].astype(np.uint8)
