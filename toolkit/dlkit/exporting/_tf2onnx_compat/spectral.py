"""tf2onnx workaround 6 (see the package docstring): TensorFlow's `RFFT` read through `Real` and `Imag`, as Keras 3's
`keras.ops.stft` and so `keras.layers.MelSpectrogram` read it, or through `ComplexAbs` (`tf.abs(tf.signal.stft(...))`,
TensorFlow's audio tutorial), as one `MatMul` with a constant DFT matrix.

A matrix, not ONNX's `DFT` (opset 17): on 1 s of 16 kHz audio in 512-sample frames onnxruntime 1.32 runs the
product in 0.16 ms and `DFT` in 0.43 ms (one thread, x86-64), and its `DFT` of a length that is not a power of two
(400) strays up to 1.6e-3 from the exact transform, 100x float32 round-off. The matrix costs 4 * frame_length *
(fft_length + 2) bytes (1 MB for 512 points)."""

from __future__ import annotations

from typing import Callable

import numpy as np

# the name every RFFT this module converts gets, so that its readers know their input is ours
_PREFIX = "dlkit_rfft"
_READERS = {"Real": "real", "Imag": "imag", "ComplexAbs": "abs"}  # TensorFlow op -> what it takes of the spectrum


def dft_matrix(frame_length: int, fft_length: int, dtype=np.float32) -> np.ndarray:
    """The real DFT of a frame of `frame_length` samples (zero-padded to `fft_length`, or cut to it) as a matrix:
    `frame @ matrix` is the `fft_length // 2 + 1` real parts, then as many imaginary parts, of `np.fft.rfft`.

    The angles are taken from `t * k mod fft_length`, exact integers, so no row loses precision to a large phase.
    """
    bins = fft_length // 2 + 1
    t = np.arange(min(frame_length, fft_length), dtype=np.int64)[:, None]
    angle = 2 * np.pi * ((t * np.arange(bins, dtype=np.int64)[None, :]) % fft_length) / fft_length
    return np.concatenate([np.cos(angle), -np.sin(angle)], axis=1).astype(dtype)


def rfft_handler(ctx, node, name, args):  # noqa: ARG001 (tf2onnx's signature)
    """`RFFT(x, [n])` whose readers are all `Real`, `Imag` or `ComplexAbs`: `x[..., :n] @ dft_matrix`, a tensor of
    the real parts then the imaginary parts along the last axis, of x's dtype. Any other reader keeps tf2onnx's
    conversion (which fails: it takes `ComplexAbs` alone, and only of a 2-D RFFT, onnx/tensorflow-onnx#2340).

    The product is in x's dtype. In float32 it strays from the exact transform 4x as far as TensorFlow's FFT does,
    which log10 magnifies on a log-mel spectrogram's quietest bins; still, over `MelSpectrogram`s of 512 and 1024
    points on words, tones in faint noise and 16-bit audio, the worst element stays at 0.73 of dlkit's default
    tolerance (a float64 product: 0.63, for twice the bytes and time, and a `Cast` that the fp16 converter of
    `dlkit quantize` mistypes). README, "Audio models", says where float32 itself runs out."""
    from tf2onnx import utils
    from tf2onnx.onnx_opset.signal import RFFTOp

    readers = ctx.find_output_consumers(node.output[0])
    if not readers or any(r.type not in _READERS for r in readers) or node.output[0] in ctx.outputs:
        return RFFTOp.version_13(ctx, node)
    x, length = node.input
    length_node, shape = ctx.get_node_by_output(length), ctx.get_shape(x)
    utils.make_sure(length_node is not None and length_node.is_const(), "RFFT %s needs a constant fft_length",
                    node.name)
    utils.make_sure(shape is not None and shape[-1] > 0, "RFFT %s needs a known frame length, got shape %r",
                    node.name, shape)
    fft_length = int(np.asarray(length_node.get_tensor_value()).reshape(-1)[0])
    frame_length, bins, dtype, out = shape[-1], fft_length // 2 + 1, ctx.get_dtype(x), node.output[0]
    ctx.remove_node(node.name)
    if frame_length > fft_length:  # TensorFlow reads the first fft_length samples
        x = ctx.make_node("Slice", [x, *_ints(ctx, node.name, [0], [fft_length], [-1])]).output[0]
    matrix = ctx.make_const(utils.make_name(f"{node.name}_dft"),
                            dft_matrix(frame_length, fft_length, utils.map_onnx_to_numpy_type(dtype))).output[0]
    ctx.make_node("MatMul", [x, matrix], outputs=[out], name=utils.make_name(_PREFIX),
                  shapes=[[*shape[:-1], 2 * bins]], dtypes=[dtype])
    return None


def part_handler(part: str) -> Callable:
    """The handler of `Real` (part "real"), `Imag` ("imag") or `ComplexAbs` ("abs": tf.abs, as TensorFlow's audio
    tutorials take a spectrogram) of an RFFT that `rfft_handler` converted: a `Slice` of its half of the last axis, or
    the magnitude `sqrt(real ** 2 + imag ** 2)` of both."""

    def handler(ctx, node, name, args):  # noqa: ARG001 (tf2onnx's signature)
        x, (out,) = node.input[0], node.output
        producer = ctx.get_node_by_output(x)
        if producer is None or not producer.name.startswith(_PREFIX):
            if part == "abs":  # of tf2onnx's own FFT / RFFT conversion
                from tf2onnx.onnx_opset.signal import ComplexAbsOp

                return ComplexAbsOp.version_13(ctx, node)
            raise ValueError(f"{node.type} reads a complex tensor that is not an RFFT's; only the parts of "
                             "tf.signal.rfft / keras.ops.stft outputs convert")
        shape, dtype = ctx.get_shape(x), ctx.get_dtype(x)
        bins = shape[-1] // 2
        typed = {"outputs": [out], "shapes": [[*shape[:-1], bins]], "dtypes": [dtype]}
        ctx.remove_node(node.name)
        if part != "abs":
            start = 0 if part == "real" else bins
            ctx.make_node("Slice", [x, *_ints(ctx, node.name, [start], [start + bins], [-1])], **typed)
            return None
        halves = [ctx.make_node("Slice", [x, *_ints(ctx, node.name, [start], [start + bins], [-1])]).output[0]
                  for start in (0, bins)]
        squares = [ctx.make_node("Mul", [h, h]).output[0] for h in halves]
        ctx.make_node("Sqrt", [ctx.make_node("Add", squares).output[0]], **typed)
        return None

    return handler


def handlers() -> dict[str, tuple[Callable, list]]:
    """tf2onnx's `custom_op_handlers` entries of this workaround."""
    return {"RFFT": (rfft_handler, []), **{op: (part_handler(part), []) for op, part in _READERS.items()}}


def _ints(ctx, base: str, *values: list[int]) -> list[str]:
    from tf2onnx import utils

    return [ctx.make_const(utils.make_name(f"{base}_i64"), np.array(v, np.int64)).output[0] for v in values]
