"""Input checks: every wrong input names the input, the expected and the given shape and dtype, and the fix."""

from __future__ import annotations

import re

import numpy as np
import pytest

from dlkit_runtime import InvalidInputError, Model


@pytest.fixture(scope="module")
def tiny(tiny_onnx):
    return Model(tiny_onnx, providers="cpu", threads=1)


@pytest.fixture(scope="module")
def two(two_input_onnx):
    return Model(two_input_onnx, providers="cpu", threads=1)


def _raises(match, model, x, **kwargs):
    with pytest.raises(InvalidInputError, match=match):
        model.predict(x, **kwargs)


def test_missing_input_name(two):
    _raises(r"missing input\(s\) 'b'; the model's inputs are 'a', 'b' and you gave 'a'", two,
            {"a": np.zeros((1, 3), np.float32)})


def test_unknown_input_name(two):
    _raises(r"unknown input name\(s\) 'c'; the model's inputs are 'a', 'b'", two,
            {"a": np.zeros((1, 3), np.float32), "b": np.zeros((1, 3), np.int64), "c": np.zeros(3)})


def test_one_array_for_two_inputs(two):
    _raises(r"the model has 2 inputs \('a', 'b'\); pass a dict", two, np.zeros((1, 3), np.float32))


def test_missing_batch_axis(tiny):
    _raises(re.escape("input 'pixels' wants float32 (N, 28, 28, 1), got float32 (28, 28, 1); add a batch axis: x[None]"),
            tiny, np.zeros((28, 28, 1), np.float32))


def test_missing_batch_and_channel_axes(tiny):
    _raises(re.escape("got uint8 (28, 28); add a batch and a channel axis: x[None, ..., None]"), tiny,
            np.zeros((28, 28), np.uint8))


def test_extra_leading_axis(tiny):
    _raises(re.escape("got float32 (1, 2, 28, 28, 1); drop the leading axis: x[0]"), tiny,
            np.zeros((1, 2, 28, 28, 1), np.float32))


def test_other_rank(tiny):
    _raises(re.escape("got float32 (2, 784); reshape it to rank 4"), tiny, np.zeros((2, 784), np.float32))


def test_fixed_dimension(tiny):
    _raises(re.escape("wants float32 (N, 28, 28, 1), got float32 (2, 28, 27, 1): axis 2 must be 28"), tiny,
            np.zeros((2, 28, 27, 1), np.float32))


def test_lossy_dtype_refused(tiny):
    _raises(re.escape("got float64 (2, 28, 28, 1): float64 -> float32 can lose values; cast it (x.astype('float32')) "
                      "or pass cast=True"), tiny, np.zeros((2, 28, 28, 1)))


def test_lossy_dtype_cast_when_asked(tiny):
    x = np.random.default_rng(0).random((2, 28, 28, 1))
    got = tiny.predict(x, cast=True)["digit"]
    np.testing.assert_array_equal(got, tiny.predict(x.astype(np.float32))["digit"])


def test_lossless_dtype_cast(tiny, two):
    pixels = np.random.default_rng(0).integers(0, 256, (2, 28, 28, 1), dtype=np.uint8)
    np.testing.assert_array_equal(tiny.predict(pixels)["digit"], tiny.predict(pixels.astype(np.float32))["digit"])
    # int32 -> int64 is lossless too
    out = two.predict({"a": np.ones((1, 3), np.float32), "b": np.array([[1, 2, 3]], np.int32)})["sum"]
    np.testing.assert_array_equal(out, [[2, 3, 4]])


def test_float_into_integer_input_refused(two):
    _raises(re.escape("input 'b' wants int64 (N, 3), got float32 (1, 3): float32 -> int64 can lose values"), two,
            {"a": np.zeros((1, 3), np.float32), "b": np.zeros((1, 3), np.float32)})


def test_bool_is_not_cast_silently(two):
    _raises("bool -> int64 can lose values", two, {"a": np.zeros((1, 3), np.float32), "b": np.zeros((1, 3), bool)})


def test_lists_are_accepted(two):
    out = two.predict({"a": np.zeros((1, 3), np.float32), "b": [[1, 2, 3]]})["sum"]
    np.testing.assert_array_equal(out, [[1, 2, 3]])
