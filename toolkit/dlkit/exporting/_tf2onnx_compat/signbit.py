"""Keras 3's TensorFlow `signbit` without `Bitcast`, which tf2onnx cannot convert (item 8 of the package docstring).

`keras.ops.argmax` / `argmin` on floats call `signbit` (keras-team/keras, backend/tensorflow/numpy.py, for the
flush-to-zero issue jax-ml/jax#24280), which reads the sign bit through `tf.bitcast(x, tf.int32)`; ONNX has no
bitcast. While tracing for export, `signbit` is `x < 0 or (x == 0 and 1 / x < 0)`: the same for every number and
both zeros (a NaN's sign bit reads as unset). Delete it when tf2onnx converts `Bitcast` or Keras drops it.
"""

from __future__ import annotations

import contextlib
from typing import Iterator


@contextlib.contextmanager
def bitcast_free_signbit() -> Iterator[None]:
    """While active, Keras's TensorFlow `signbit` is traced from comparisons, not from a bitcast."""
    import tensorflow as tf
    from keras.src.backend.tensorflow import numpy as tf_numpy

    original = tf_numpy.signbit

    def signbit(x):
        x = tf_numpy.convert_to_tensor(x)
        if not tf.inside_function() or not x.dtype.is_floating:
            return original(x)
        zero = tf.zeros([], x.dtype)
        return tf.logical_or(tf.less(x, zero), tf.logical_and(tf.equal(x, zero), tf.less(tf.math.reciprocal(x), zero)))

    tf_numpy.signbit = signbit
    try:
        yield
    finally:
        tf_numpy.signbit = original
