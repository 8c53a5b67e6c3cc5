"""KerasHub models (issue #27) export with parity: SegFormer, whose one-head attention tf2onnx's optimizer broke
(`_tf2onnx_compat.reshapes`), ViT (exact GELU) and a BERT text classifier (three integer inputs). Small
configurations with random weights, built offline from their classes (bench/kerashub_families.py); the bench runs
every family through dlkit, Keras' own export and plain tf2onnx."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("keras_hub")

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

import dlkit  # noqa: E402
from bench.kerashub_families import FAMILIES, samples  # noqa: E402
from dlkit.exporting.options import DEFAULT_ATOL, DEFAULT_RTOL  # noqa: E402


def _built(family: str):
    import keras

    keras.utils.set_random_seed(0)
    model, inputs = FAMILIES[family]()
    return model, inputs


def _keras(model, feed: dict) -> list[np.ndarray]:
    names = [t.name for t in model.inputs]
    arrays = [feed[n] for n in names]
    out = model(dict(zip(names, arrays)) if isinstance(model.input, dict) else arrays[0], training=False)
    return [np.asarray(v) for v in (out.values() if isinstance(out, dict) else [out])]


def _named(model, inputs: dict, batch: int, seed: int) -> dict:
    """Samples keyed by the model's input names (in `model.inputs` order for a model with one input)."""
    x = samples(inputs, batch, seed)
    if isinstance(model.input, dict):
        return x
    return dict(zip([t.name for t in model.inputs], x.values()))


def test_segformer_exports_with_parity_at_any_batch(tmp_path):
    """The one-head, spatially reduced attention of MiT's first stage: before the workaround onnxruntime refused the
    graph at every batch size. Parity at dlkit's defaults on 4 samples, then the file at batch 1 and 3."""
    import onnxruntime as ort

    model, inputs = _built("SegFormer")
    result = dlkit.export(model, tmp_path / "segformer.onnx", sample_data=_named(model, inputs, 4, 0))
    assert result.parity[0].max_abs_error <= DEFAULT_ATOL
    assert result.outputs[0].shape[1:] == (32, 32, 3)
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        feed = _named(model, inputs, batch, batch)
        got = session.run(None, {session.get_inputs()[0].name: next(iter(feed.values()))})[0]
        want = _keras(model, feed)[0]
        assert got.shape == want.shape == (batch, 32, 32, 3)
        assert np.all(np.abs(got - want) <= DEFAULT_ATOL + DEFAULT_RTOL * np.abs(want))


def test_tf2onnx_alone_still_breaks_mit_and_the_workaround_keeps_its_reshapes():
    """The upstream bug, kept in view: plain tf2onnx's graph of the MiT encoder fails in onnxruntime ("cannot
    broadcast"). When this test fails, tf2onnx merges reshapes safely: delete `_tf2onnx_compat/reshapes.py`."""
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx

    from dlkit.exporting._tf2onnx_compat.reshapes import safe_reshape_merging

    model, inputs = _built("MiT")
    x = next(iter(samples(inputs, 2).values()))
    spec = [tf.TensorSpec((None, 32, 32, 3), tf.float32, name="image")]
    fn = tf.function(lambda t: model(t, training=False), input_signature=spec)
    plain, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=17)
    session = ort.InferenceSession(plain.SerializeToString(), providers=["CPUExecutionProvider"])
    with pytest.raises(Exception, match="broadcast"):
        session.run(None, {"image": x})
    with safe_reshape_merging() as kept:
        fixed, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=17)
    assert len(kept) >= 2  # the keys' and the values' reshapes of the one-head stage
    session = ort.InferenceSession(fixed.SerializeToString(), providers=["CPUExecutionProvider"])
    got, want = session.run(None, {"image": x})[0], np.asarray(model(x, training=False))
    assert np.max(np.abs(got - want)) <= DEFAULT_ATOL


@pytest.mark.parametrize("family", ["ViT", "BERT"])
def test_kerashub_family_exports_with_parity(tmp_path, family):
    """ViT's exact GELU (TensorFlow's Erfc) and BERT's three integer inputs (token ids, segments, padding mask)."""
    import onnxruntime as ort

    model, inputs = _built(family)
    sample = _named(model, inputs, 4, 0)
    result = dlkit.export(model, tmp_path / f"{family}.onnx", sample_data=sample)
    assert len(result.inputs) == len(inputs)
    assert all(p.max_abs_error <= DEFAULT_ATOL for p in result.parity)
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    feed = _named(model, inputs, 2, 7)
    given = {i.name: feed[i.name].astype(np.int32 if "int" in i.type else np.float32) for i in session.get_inputs()}
    got, want = session.run(None, given)[0], _keras(model, feed)[0]
    assert got.shape == want.shape
    assert np.all(np.abs(got - want) <= DEFAULT_ATOL + DEFAULT_RTOL * np.abs(want))
