"""Models a user's first real export holds, which tf2onnx alone converts wrongly or not at all (issue: export every
Keras model people deploy): Normalization's captured mean and variance, Bidirectional RNNs, grouped convolutions,
the exact GELU (the keras.applications bases built on them, EfficientNet and ConvNeXt, are in
test_export_coverage.py with every other family).

dlkit.export checks parity itself before it keeps a file; these tests add the graph facts (no extra inputs, no
Loop, the ops emitted) and the figure against a bound: float32 round-off of a few layers of outputs of magnitude
about 1-10 stays near 1e-6, so 1e-5 (the suite's float bound, tests/toolkit/exporting/test_exporting.py) holds on any CPU.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import dlkit
from dlkit.core.sessions import graph_inputs

FLOAT_BOUND = 1e-5


def _ops(path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


@pytest.mark.parametrize("build", ["adapted", "given", "images_axis_none"])
def test_normalization_exports_with_its_statistics_as_weights(build, tmp_path):
    """Keras's regression tutorial's first layer (adapted on the data), one with given mean and variance, and one
    normalizing images by a single mean (axis=None): tf2onnx made the statistics graph inputs; now they are
    initializers and the model takes only its own input."""
    import keras

    keras.utils.set_random_seed(0)
    data = np.random.default_rng(0).normal(3.0, 2.0, (512, 9)).astype(np.float32)
    if build == "adapted":
        norm = keras.layers.Normalization()
        norm.adapt(data)
        inputs = keras.Input((9,), name="features")
    elif build == "given":
        norm = keras.layers.Normalization(mean=list(range(9)), variance=[0.5 + k for k in range(9)])
        inputs = keras.Input((9,), name="features")
    else:
        data = np.random.default_rng(1).uniform(0, 255, (64, 8, 8, 3)).astype(np.float32)
        norm = keras.layers.Normalization(axis=None)
        norm.adapt(data)
        inputs = keras.Input((8, 8, 3), name="features")
    x = norm(inputs)
    x = keras.layers.Flatten()(x) if build == "images_axis_none" else x
    model = keras.Model(inputs, keras.layers.Dense(1, name="price")(keras.layers.Dense(16, activation="relu")(x)))
    path = tmp_path / "norm.keras"
    model.save(path)
    result = dlkit.export(path, tmp_path / "norm.onnx", sample_data={"features": data[:64]})
    exported = onnx.load(result.path)
    assert [i.name for i in graph_inputs(exported)] == ["features"]
    assert result.max_abs_error <= FLOAT_BOUND * max(1.0, float(np.abs(model.predict(data[:64], verbose=0)).max()))


@pytest.mark.parametrize("kind", ["GRU", "LSTM"])
@pytest.mark.parametrize("merge, sequences, state", [("concat", True, False), ("sum", False, False),
                                                    ("mul", True, False), ("ave", False, False),
                                                    ("concat", True, True)])
def test_bidirectional_exports_as_two_native_ops(kind, merge, sequences, state, tmp_path):
    """Bidirectional GRU/LSTM, every merge mode, with and without sequences and states: the forward layer and the
    backward one (go_backwards: ONNX's reverse direction) both native, no Loop left."""
    import keras

    keras.utils.set_random_seed(2)
    inputs = keras.Input((None, 5), name="seq")
    layer = keras.layers.Bidirectional(getattr(keras.layers, kind)(6, return_sequences=sequences, return_state=state),
                                       merge_mode=merge, name="bi")
    out = layer(inputs)
    outputs = {"y": out[0], **{f"s{k}": s for k, s in enumerate(out[1:])}} if state else {"y": out}
    result = dlkit.export(keras.Model(inputs, outputs), tmp_path / "bi.onnx", num_samples=8)
    ops = _ops(result.path)
    assert ops.count(kind) == 2 and "Loop" not in ops and "Scan" not in ops
    directions = sorted(a.s.decode() for n in onnx.load(result.path).graph.node if n.op_type == kind
                        for a in n.attribute if a.name == "direction")
    assert directions == ["forward", "reverse"]
    assert not result.generic_recurrent and len(result.native_recurrent) == 2
    assert result.max_abs_error <= FLOAT_BOUND


def test_grouped_convolution_and_exact_gelu(tmp_path):
    """Conv2D(groups=4) and a depthwise one as a grouped Conv2D (ConvNeXt's), with the exact GELU (TensorFlow's
    Erfc): ONNX Conv with `group`, Erf; no TensorFlow call left."""
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input((12, 12, 8), name="image")
    x = keras.layers.Conv2D(16, 3, groups=4, padding="same")(inputs)
    x = keras.layers.Conv2D(16, 7, groups=16, padding="same")(x)
    x = keras.layers.Dense(16, activation="gelu")(x)  # keras.activations.gelu: approximate=False, the exact one
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x)))
    result = dlkit.export(model, tmp_path / "grouped.onnx", num_samples=8)
    graph = onnx.load(result.path).graph
    groups = sorted(a.i for n in graph.node if n.op_type == "Conv" for a in n.attribute if a.name == "group")
    assert groups == [4, 16]
    assert "Erf" in _ops(result.path)
    assert result.max_abs_error <= FLOAT_BOUND


def test_preprocessing_layers_export_and_augmentation_vanishes(tmp_path):
    """The preprocessing a vision model carries into inference (RandomFlip, RandomRotation, RandomZoom and
    RandomContrast, which are identities at inference; Rescaling; Resizing; CenterCrop; Normalization per channel,
    adapted), saved as .keras: one input, no random op left, and parity on real-looking images (0-255)."""
    import keras

    keras.utils.set_random_seed(0)
    images = np.random.default_rng(3).uniform(0, 255, (32, 40, 40, 3)).astype(np.float32)
    norm = keras.layers.Normalization(axis=-1)
    norm.adapt(images / 255.0)
    inputs = keras.Input((40, 40, 3), name="image")
    x = keras.layers.RandomFlip("horizontal")(inputs)
    x = keras.layers.RandomRotation(0.1)(x)
    x = keras.layers.RandomZoom(0.2)(x)
    x = keras.layers.RandomContrast(0.2)(x)
    x = keras.layers.Rescaling(1 / 255.0)(x)
    x = keras.layers.Resizing(32, 32)(x)
    x = keras.layers.CenterCrop(28, 28)(x)
    x = norm(x)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(4, name="scores")(x))
    path = tmp_path / "vision.keras"
    model.save(path)
    result = dlkit.export(path, tmp_path / "vision.onnx", sample_data={"image": images})
    ops = set(_ops(result.path))
    assert [i.name for i in graph_inputs(onnx.load(result.path))] == ["image"]
    assert not {op for op in ops if op.startswith("Random")}, ops  # RandomUniform/RandomNormal: augmentation left in
    assert "Resize" in ops
    # Bilinear resizing and a 3x3 conv of values normalized to about unit scale: float32 round-off, 1e-5 of the scale
    assert result.max_abs_error <= FLOAT_BOUND * max(1.0, float(np.abs(model.predict(images, verbose=0)).max()))
