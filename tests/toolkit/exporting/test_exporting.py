"""dlkit.export on the sample models and on small models built here: parity as numbers, names, native RNN ops."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import dlkit
from dlkit.errors import ConversionError, ToleranceError
from tests.conftest import GRU_UNITS, SAMPLES, real_inputs, sample_cases

NUM_REAL = 256  # real MNIST test images (or text windows) compared per export


def _run_onnx(path, feeds):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def _float32_bound(sample, expected) -> float:
    """How far onnxruntime's float32 outputs may be from Keras's on any CPU (each has its own summation order:
    TensorFlow's and onnxruntime's kernels, AVX2, AVX-512 or NEON).

    MLPs and CNNs: the product's bound, 1e-5 (a few layers; float32 round-off is ~1e-6 of outputs of magnitude ~10).
    The GRU runs 100 recurrent steps, each with dot products of 3 x 256 terms: another summation order changes a
    step by about 2^-24 * sqrt(768) of its scale, and the differences add up like a random walk over the steps (the
    gates keep them from growing faster): 2^-24 * sqrt(768) * sqrt(100) ~ 1.7e-5 of the output's largest magnitude
    (logits up to ~22: ~3.6e-4; the state is within [-1, 1]). An AVX2 CPU measured 1.05e-5 on the logits.
    """
    if sample.kind != "gru":
        return 1e-5
    return 2.0 ** -24 * np.sqrt(3 * GRU_UNITS) * np.sqrt(100) * max(1.0, float(np.abs(expected).max()))


@pytest.mark.parametrize("name, fmt", sample_cases())
def test_sample_model_parity_on_real_data(name, fmt, model_files, keras_models, mnist_test, text_ids, tmp_path):
    sample = SAMPLES[name]
    feeds = real_inputs(sample, mnist_test, text_ids, NUM_REAL)
    # A SavedModel signature names its outputs output_0, output_1, ...; rename them to the Keras names.
    rename = [f"output_{i}={n}" for i, n in enumerate(sample.outputs)] if fmt == "savedmodel" else sample.rename
    if fmt == "savedmodel" and sample.subclassed and sample.kind != "gru":
        rename.append("args_0=inputs")  # Keras names a subclassed model's SavedModel input args_0
    result = dlkit.export(model_files[name, fmt], tmp_path / f"{name}.onnx", sample_data=feeds,
                          num_samples=NUM_REAL, input_specs=sample.input_specs, rename=rename)

    assert result.num_samples == NUM_REAL
    assert [p.name for p in result.parity] == list(sample.outputs)
    model = keras_models[name]
    keras_out = model(**feeds) if sample.kind == "gru" else model(next(iter(feeds.values())))
    keras_out = [np.asarray(o) for o in (keras_out if isinstance(keras_out, (tuple, list)) else [keras_out])]
    bounds = {n: _float32_bound(sample, expected) for n, expected in zip(sample.outputs, keras_out)}
    for figure in result.parity:
        assert figure.max_abs_error <= bounds[figure.name], figure
        assert figure.cosine_similarity > 0.999999, figure
    if sample.kind == "gru":
        assert result.native_recurrent == (() if fmt == "savedmodel" else ("gru",))

    # Independently of the export's own check: onnxruntime on the written file against a Keras call.
    onnx_out = _run_onnx(result.path, feeds)
    for out_name, expected in zip(sample.outputs, keras_out):
        assert np.abs(expected - onnx_out[out_name]).max() <= bounds[out_name]
    assert (keras_out[0].argmax(-1) == onnx_out[sample.outputs[0]].argmax(-1)).mean() == 1.0


def test_registry_models_all_tested():
    """Every trained model in sample_models/trained is in the registry or has a test module of its own, so none
    goes untested."""
    from tests.conftest import OWN_TESTS, ROOT, TRAINED

    trained = {p.stem for p in TRAINED.glob("*.keras")}
    assert trained == set(SAMPLES) | set(OWN_TESTS) and not set(SAMPLES) & set(OWN_TESTS)
    for name, module in OWN_TESTS.items():
        assert f"{name}.keras" in (ROOT / module).read_text(), module


def test_names_metadata_and_checker(model_files, tmp_path):
    path = tmp_path / "cnn.onnx"
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(str(d) for d in range(10)))
    result = dlkit.export(model_files["cnn", "keras"], path, labels=labels, preprocessing={"scale": 1 / 255})
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["pixels"]
    assert [o.name for o in model.graph.output] == ["digit"]
    assert result.inputs[0].shape == ("N", 28, 28, 1)  # dynamic batch by default
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["dlkit.labels"]) == [str(d) for d in range(10)]
    assert json.loads(meta["dlkit.preprocessing"]) == {"scale": pytest.approx(1 / 255)}
    assert json.loads(meta["dlkit.input_layout"]) == {"pixels": "NHWC"}
    stored = json.loads(meta["dlkit.parity"])["outputs"][0]
    assert stored["max_abs_error"] == pytest.approx(result.parity[0].max_abs_error)
    assert meta["dlkit.version"] == dlkit.__version__ and "keras" in meta["dlkit.framework"]
    # Cleanup left no dynamic Shape/Gather chain from Flatten and no Transpose before the dense layers.
    ops = [n.op_type for n in model.graph.node]
    assert "Shape" not in ops and "Gather" not in ops
    assert ops.count("Transpose") == 0, ops


def test_fixed_batch_rename_and_opset(model_files, tmp_path):
    result = dlkit.export(model_files["mlp_digits", "keras"], tmp_path / "m.onnx", batch_size=1,
                          rename=["pixels=image", "digit=probs"], opset=13)
    model = onnx.load(result.path)
    assert result.inputs[0].name == "image" and result.inputs[0].shape == (1, 784)
    assert result.outputs[0].name == "probs"
    assert {o.domain: o.version for o in model.opset_import}[""] == 13
    x = np.random.default_rng(0).random((1, 784), dtype=np.float32)
    assert _run_onnx(result.path, {"image": x})["probs"].shape == (1, 10)


def _seq_model(kind, **options):
    import keras

    keras.utils.set_random_seed(1)
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(50, 12, mask_zero=options.pop("mask_zero", False))(tokens)
    options = {"return_sequences": True, "return_state": True, **options}
    rnn = getattr(keras.layers, kind)(24, name="rnn", **options)
    seq, *states = rnn(x)
    outputs = {"seq": seq, "h": states[0]}
    if kind == "LSTM":
        outputs["c"] = states[1]
    return keras.Model(tokens, outputs)


@pytest.mark.parametrize("kind, options", [
    ("GRU", {}), ("GRU", {"reset_after": False}), ("LSTM", {}), ("GRU", {"activation": "relu"}),
    ("GRU", {"return_sequences": False}), ("LSTM", {"use_bias": False}),
    ("GRU", {"go_backwards": True}), ("LSTM", {"go_backwards": True}),  # ONNX's reverse direction, Y flipped
])
def test_recurrent_layers_export_as_native_ops(kind, options, tmp_path):
    model = _seq_model(kind, **options)
    result = dlkit.export(model, tmp_path / "rnn.onnx", num_samples=8)
    ops = {n.op_type for n in onnx.load(result.path).graph.node}
    assert kind in ops and "Loop" not in ops
    assert result.native_recurrent == ("rnn",) and not result.generic_recurrent
    assert {p.name for p in result.parity} == ({"seq", "h", "c"} if kind == "LSTM" else {"seq", "h"})
    assert result.max_abs_error <= 1e-5


@pytest.mark.parametrize("options, reason", [({"mask_zero": True}, "masked")])
def test_recurrent_fallback_keeps_generic_loop_and_parity(options, reason, tmp_path):
    model = _seq_model("GRU", **options)
    result = dlkit.export(model, tmp_path / "rnn.onnx", num_samples=8)
    ops = {n.op_type for n in onnx.load(result.path).graph.node}
    assert "GRU" not in ops and "Loop" in ops
    assert reason in result.generic_recurrent["rnn"]
    assert result.max_abs_error <= 1e-5


def test_char_gru_exports_native_gru(model_files, tmp_path):
    sample = SAMPLES["char_gru"]
    result = dlkit.export(model_files["char_gru", "keras"], tmp_path / "gru.onnx", input_specs=sample.input_specs,
                          rename=sample.rename)
    ops = [n.op_type for n in onnx.load(result.path).graph.node]
    assert ops.count("GRU") == 1 and "Loop" not in ops
    # the Embedding's negative-index wrap and the Dense's Reshape/Shape chain are folded: 25 nodes -> 9
    assert not {"Less", "Not", "Shape", "Reshape"} & set(ops) and len(ops) <= 10, ops
    assert [t.name for t in result.inputs] == ["x", "hidden"]
    assert [t.name for t in result.outputs] == ["logits", "state"]


def test_multi_input_output_functional_with_layer_coverage(tmp_path):
    import keras

    keras.utils.set_random_seed(2)
    image = keras.Input((16, 16, 3), name="image")
    extra = keras.Input((5,), name="extra")
    x = keras.layers.Conv2D(8, 3, padding="same")(image)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = keras.layers.AveragePooling2D(2)(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Dropout(0.5)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Concatenate()([x, keras.layers.Dense(4)(extra)])
    model = keras.Model({"image": image, "extra": extra},
                        {"score": keras.layers.Dense(1, name="score")(x),
                         "classes": keras.layers.Dense(3, activation="softmax", name="classes")(x)})
    result = dlkit.export(model, tmp_path / "multi.onnx")
    assert {t.name for t in result.inputs} == {"image", "extra"}
    assert {t.name for t in result.outputs} == {"score", "classes"}
    assert result.max_abs_error <= 1e-5


def test_parity_failure_keeps_no_file(model_files, tmp_path):
    path = tmp_path / "cnn.onnx"
    with pytest.raises(ToleranceError, match="max abs error"):
        dlkit.export(model_files["cnn", "keras"], path, atol=1e-15, rtol=0)
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_unconvertible_layer_is_named(tmp_path):
    import keras
    import tensorflow as tf

    class Lgamma(keras.layers.Layer):
        def call(self, x):
            return tf.math.lgamma(x)

    inputs = keras.Input((4,), name="x")
    model = keras.Model(inputs, Lgamma(name="my_lgamma")(keras.layers.Dense(4)(inputs)))
    with pytest.raises(ConversionError, match="my_lgamma"):
        dlkit.export(model, tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()
