"""Odd but valid Keras models through `dlkit export` (CliRunner): string, ragged, dict, int64/bool/uint8/float16/
float64 inputs, zero-size and None-only shapes, a fixed batch, dict/tuple/nested outputs, an integer output, a
constant output, an Embedding on int64 ids, registered custom layers and subclassed models, as .keras and .h5.
Each must give a file that onnxruntime loads (exit 0) or dlkit's one-line error (non-zero exit), never a traceback.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from dlkit.cli import cli

keras = pytest.importorskip("keras")
ops = keras.ops


@keras.saving.register_keras_serializable(package="dlkit_fuzz")
class Scale(keras.layers.Layer):
    """A custom layer with a weight (no Lambda)."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.w


@keras.saving.register_keras_serializable(package="dlkit_fuzz")
class Constant(keras.layers.Layer):
    """Returns a constant, whatever it is given."""

    def call(self, x):
        return ops.ones((2, 3))

    def compute_output_shape(self, input_shape):
        return (2, 3)


@keras.saving.register_keras_serializable(package="dlkit_fuzz")
class TwoHeads(keras.Model):
    """Subclassed: one tensor in, a tuple of (float, int) out."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(3)

    def call(self, x):
        y = self.dense(x)
        return y, ops.argmax(y, axis=-1)


@keras.saving.register_keras_serializable(package="dlkit_fuzz")
class NestedOut(keras.Model):
    """Subclassed: a dict out, one of whose values is a tuple."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(3)

    def call(self, x):
        y = self.dense(x)
        return {"y": y, "pair": (y * 2.0, ops.argmax(y, axis=-1))}


@keras.saving.register_keras_serializable(package="dlkit_fuzz")
class DictIn(keras.Model):
    """Subclassed, called on a dict of named inputs."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(2)

    def call(self, inputs):
        return self.dense(ops.concatenate([inputs["a"], inputs["b"]], axis=-1))


@keras.saving.register_keras_serializable(package="dlkit_fuzz")
class IntIds(keras.Model):
    """Subclassed: an Embedding first, fed int64 ids."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.embed = keras.layers.Embedding(10, 4)
        self.dense = keras.layers.Dense(2)

    def call(self, ids):
        return self.dense(ops.mean(self.embed(ids), axis=1))


def _typed(dtype):
    inp = keras.Input((4,), dtype=dtype, name="x")
    return keras.Model(inp, keras.layers.Dense(2)(ops.cast(inp, "float32")))


def _functional():
    """name -> a function that builds the model (functional or Sequential)."""
    def dense_on(inp, units=2):
        return keras.layers.Dense(units)(inp)

    def string_in():
        inp = keras.Input((1,), dtype="string", name="words")
        ids = keras.layers.StringLookup(vocabulary=["a", "b", "c"])(inp)
        return keras.Model(inp, dense_on(ops.cast(ids, "float32")))

    def ragged_in():
        inp = keras.Input((None,), ragged=True, name="seq")
        return keras.Model(inp, dense_on(ops.expand_dims(ops.sum(inp, axis=-1), -1)))

    def sparse_in():
        inp = keras.Input((5,), sparse=True, name="sp")
        return keras.Model(inp, dense_on(inp))

    def dict_in():
        a, b = keras.Input((3,), name="a"), keras.Input((2,), name="b")
        return keras.Model({"a": a, "b": b}, dense_on(keras.layers.Concatenate()([a, b])))

    def zero_dim():
        inp = keras.Input((0, 3), name="empty")
        return keras.Model(inp, dense_on(ops.sum(inp, axis=1)))

    def none_only():
        inp = keras.Input((None, None), name="any")
        return keras.Model(inp, dense_on(ops.sum(inp, axis=-1, keepdims=True)))

    def fixed_batch():
        inp = keras.Input(batch_shape=(3, 4), name="fixed")
        return keras.Model(inp, dense_on(inp))

    def outputs(kind):
        inp = keras.Input((4,), name="x")
        a, b, c = dense_on(inp), dense_on(inp, 3), ops.argmax(dense_on(inp, 5), axis=-1)
        out = {"dict": {"first": a, "second": b}, "tuple": (a, b), "nested": [a, (b, {"c": c})]}[kind]
        return lambda: keras.Model(inp, out)

    def argmax_out():
        inp = keras.Input((4,), name="x")
        return keras.Model(inp, ops.argmax(dense_on(inp, 5), axis=-1))

    def constant_out():
        inp = keras.Input((4,), name="x")
        return keras.Model(inp, [dense_on(inp), Constant()(inp)])

    def embedding_int64():
        inp = keras.Input((5,), dtype="int64", name="ids")
        return keras.Model(inp, dense_on(keras.layers.Flatten()(keras.layers.Embedding(10, 4)(inp))))

    def custom_layer():
        return keras.Sequential([keras.Input((4,), name="x"), Scale(), keras.layers.Dense(2)])

    built = {"string": string_in, "ragged": ragged_in, "sparse": sparse_in, "dict_in": dict_in, "zero_dim": zero_dim,
             "none_only": none_only, "fixed_batch": fixed_batch, "dict_out": outputs("dict"),
             "tuple_out": outputs("tuple"), "nested_out": outputs("nested"), "argmax": argmax_out,
             "constant": constant_out, "embedding_int64": embedding_int64, "custom_layer": custom_layer}
    built.update({f"{d}_in": (lambda d=d: _typed(d)) for d in ("int64", "int32", "bool", "uint8", "float16", "float64")})
    return built


def _subclassed():
    """name -> a function that builds and calls the subclassed model."""
    def two_heads():
        model = TwoHeads()
        model(np.zeros((1, 4), np.float32))
        return model

    def dict_call():
        model = DictIn()
        model({"a": np.zeros((1, 3), np.float32), "b": np.zeros((1, 2), np.float32)})
        return model

    def int_ids():
        model = IntIds()
        model(np.zeros((1, 5), np.int64))
        return model

    def nested():
        model = NestedOut()
        model(np.zeros((1, 4), np.float32))
        return model

    return {"sub_two_heads": two_heads, "sub_dict_call": dict_call, "sub_int64_ids": int_ids, "sub_nested_out": nested}


H5 = {"dict_in", "argmax", "int64_in", "custom_layer", "embedding_int64"}  # also saved as legacy .h5


@pytest.fixture(scope="session")
def odd_models(tmp_path_factory):
    """name -> saved file, or the reason Keras itself would not build or save it."""
    folder = tmp_path_factory.mktemp("odd_models")
    files = {}
    for name, build in {**_functional(), **_subclassed()}.items():
        suffixes = (".keras", ".h5") if name in H5 else (".keras",)
        try:
            model = build()
        except Exception as err:  # Keras's own limit, not dlkit's
            files[name] = f"Keras cannot build it: {type(err).__name__}: {str(err)[:120]}"
            continue
        for suffix in suffixes:
            path = folder / f"{name}{suffix}"
            try:
                model.save(path)
                files[name + suffix] = path
            except Exception as err:
                files[name + suffix] = f"Keras cannot save it: {type(err).__name__}: {str(err)[:120]}"
    return files


CASES = [f"{n}.keras" for n in (*_functional(), *_subclassed())] + sorted(f"{n}.h5" for n in H5)


@pytest.mark.parametrize("case", CASES)
def test_odd_model_exports_or_gives_one_line_error(odd_models, case, tmp_path):
    path = odd_models.get(case) or odd_models.get(case.rsplit(".", 1)[0])
    if isinstance(path, str):
        pytest.skip(path)
    out = tmp_path / "model.onnx"
    result = CliRunner().invoke(cli, ["export", str(path), "-o", str(out), "--num-samples", "4"])
    assert result.exception is None or isinstance(result.exception, SystemExit), (case, result.exc_info)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("export: ")]
    if result.exit_code == 0:
        assert lines == [], result.stderr
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        assert session.get_inputs() and session.get_outputs()
        print(f"{case}: exported, {[(i.name, i.type, i.shape) for i in session.get_inputs()]} -> "
              f"{[(o.name, o.type, o.shape) for o in session.get_outputs()]}")
    else:
        assert result.exit_code in (1, 2, 3, 4), result.output
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
        assert not out.exists()
        print(f"{case}: exit {result.exit_code}, {lines[0]}")
