"""Text models: a Keras classifier that starts with TextVectorization (string in), as Keras' text tutorials build it,
exported by `dlkit export` and run from strings by dlkit_runtime, checked against Keras on real Tiny Shakespeare lines.
"""

from __future__ import annotations

import json
import string

import numpy as np
import pytest
from click.testing import CliRunner

from dlkit.cli import cli
from tests.speaker_text import (MAX_TOKENS, SEQUENCE_LENGTH, SPEAKERS, check_sentences, keras_logits, speaker_lines,
                                train_speaker_model)

# Keras and onnxruntime run the same float32 embedding average and two dense layers: they differ by summation order
# only (~1e-7 here); a wrong token id moves a logit by ~1e-2. The export's own gate is atol 1e-4 + rtol 1e-4.
ATOL = 1e-4


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The classifier (tests/speaker_text.py) saved with its labels; the held-out lines; the folder."""
    model, held_out = train_speaker_model()
    folder = tmp_path_factory.mktemp("text")
    model.save(folder / "speaker.keras")
    (folder / "speakers.txt").write_text("\n".join(SPEAKERS) + "\n")
    return model, held_out, folder


@pytest.fixture(scope="module")
def exported(trained):
    """`dlkit export speaker.keras --labels speakers.txt --json`, and what it printed."""
    _, _, folder = trained
    out = folder / "speaker.onnx"
    result = CliRunner().invoke(cli, ["export", str(folder / "speaker.keras"), "-o", str(out), "--labels",
                                      str(folder / "speakers.txt"), "--json"])
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def test_export_takes_token_ids_and_keeps_the_vectorizer(trained, exported):
    import onnx

    model, _, _ = trained
    path, data = exported
    assert data["inputs"] == [{"name": "line", "dtype": "int64", "shape": ["N", SEQUENCE_LENGTH]}]
    assert data["outputs"][0]["name"] == "speaker" and data["max_abs_error"] <= ATOL
    assert any(note.startswith("from strings: 16 sentences") for note in data["notes"]), data["notes"]
    meta = {p.key: p.value for p in onnx.load(path).metadata_props}
    settings = json.loads(meta["dlkit.text_vectorization"])
    layer = model.layers[1]
    assert settings["vocabulary"] == [str(t) for t in layer.get_vocabulary()]
    assert settings["vocabulary"][:2] == ["", "[UNK]"]
    assert len(settings["vocabulary"]) == MAX_TOKENS
    assert {k: settings[k] for k in ("input", "standardize", "split", "ngrams", "output_mode", "output_sequence_length",
                                     "max_tokens", "mask_token", "oov_token")} == {
        "input": "line", "standardize": "lower_and_strip_punctuation", "split": "whitespace", "ngrams": None,
        "output_mode": "int", "output_sequence_length": SEQUENCE_LENGTH, "max_tokens": MAX_TOKENS, "mask_token": "",
        "oov_token": "[UNK]"}
    assert json.loads(meta["dlkit.labels"]) == SPEAKERS


def test_logits_from_strings_match_keras(trained, exported):
    import tensorflow as tf

    from dlkit_runtime import Model

    model, held_out, _ = trained
    sentences = check_sentences(held_out)
    onnx_model = Model(exported[0])
    ids = onnx_model.vectorizer(sentences)
    keras_ids = np.asarray(model.layers[1](tf.constant(sentences)[:, None]))
    np.testing.assert_array_equal(ids, keras_ids)  # the runtime's vectorizer is Keras's, token for token
    # the sentences hold every hard case: empty, out-of-vocabulary, longer than the sequence, punctuation, capitals
    tokens = [onnx_model.vectorizer.tokens(s) for s in sentences]
    assert len(sentences) == 200 and (ids == 0).all(axis=1).sum() >= 2 and (ids == 1).any(axis=1).sum() >= 20
    assert sum(len(t) > SEQUENCE_LENGTH for t in tokens) >= 2
    assert sum(any(c in string.punctuation for c in s) for s in sentences) >= 100
    assert sum(any(c.isupper() for c in s) for s in sentences) >= 150
    got, want = onnx_model.predict(sentences)["speaker"], keras_logits(model, sentences)
    assert got.shape == want.shape == (200, len(SPEAKERS))
    assert float(np.abs(got - want).max()) <= ATOL
    assert (got.argmax(1) == want.argmax(1)).all()
    np.testing.assert_array_equal(onnx_model.predict(ids)["speaker"], got)  # strings in = their token ids in


def test_dlkit_run_prints_keras_class(trained, exported, tmp_path):
    model, held_out, _ = trained
    sentence = held_out[7]
    result = CliRunner().invoke(cli, ["run", str(exported[0]), "--input", sentence, "--top-k", "1", "--json"])
    assert result.exit_code == 0, result.output
    best = json.loads(result.stdout)["top_k"][0][0]
    want = int(keras_logits(model, [sentence]).argmax())
    assert best["index"] == want and best["label"] == SPEAKERS[want] and "logit" in best
    lines = tmp_path / "lines.txt"
    lines.write_text("\n".join(held_out[20:25]) + "\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["run", str(exported[0]), "--input", str(lines), "--top-k", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert [row[0]["index"] for row in json.loads(result.stdout)["top_k"]] == \
        keras_logits(model, held_out[20:25]).argmax(1).tolist()
    table = CliRunner().invoke(cli, ["run", str(exported[0]), "--input", sentence, "--top-k", "1"])
    assert table.exit_code == 0 and f"{SPEAKERS[want]} (logit" in table.stdout


def _small_text_model(shape=(1,), body="embedding", **settings):
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(1)
    lines = [p[0] for p in speaker_lines()[:300]]
    vectorizer = keras.layers.TextVectorization(max_tokens=300, **settings)
    vectorizer.adapt(tf.constant(lines))
    text = keras.Input(shape=shape, dtype="string", name="line")
    x = vectorizer(text)
    if body == "embedding":
        x = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(300, 8)(x))
    model = keras.Model(text, keras.layers.Dense(len(SPEAKERS), name="speaker")(keras.layers.Dense(8)(x)))
    return model, lines


@pytest.mark.parametrize("settings", [dict(output_mode="multi_hot"), dict(output_mode="tf_idf", ngrams=2),
                                      dict(output_mode="count", pad_to_max_tokens=True)])
def test_counting_modes_export_from_strings(settings, tmp_path):
    import dlkit
    from dlkit_runtime import Model

    model, lines = _small_text_model(shape=(), body="dense", **settings)
    result = dlkit.export(model, tmp_path / "bag.onnx")
    assert [(i.dtype, i.shape) for i in result.inputs] == [("float32", ("N", 300))]
    sentences = ["", "Zounds! QUOTH the xylophonist", *lines[-60:]]
    import tensorflow as tf

    got = Model(tmp_path / "bag.onnx").predict(sentences)["speaker"]
    want = np.asarray(model(tf.constant(sentences), training=False))
    assert float(np.abs(got - want).max()) <= ATOL


def _one_line_error(result, code: int, *needles: str) -> str:
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("export: ")]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_custom_standardize_is_refused_in_one_line(tmp_path):
    import keras
    import tensorflow as tf

    @keras.saving.register_keras_serializable(package="dlkit_tests")
    def no_digits(text):
        return tf.strings.regex_replace(tf.strings.lower(text), "[0-9]", "")

    model, _ = _small_text_model(standardize=no_digits, output_sequence_length=8)
    model.save(tmp_path / "custom.keras")
    result = CliRunner().invoke(cli, ["export", str(tmp_path / "custom.keras"), "-o", str(tmp_path / "custom.onnx")])
    _one_line_error(result, 1, "custom standardize callable (no_digits)", "lower_and_strip_punctuation")
    assert not (tmp_path / "custom.onnx").exists()


@pytest.mark.parametrize("shape, settings, needle", [
    ((1,), dict(output_mode="one_hot"), "output_mode='one_hot'"),
    ((1,), dict(output_mode="multi_hot"), "give the string Input shape=()"),
])
def test_unsupported_settings_are_refused(shape, settings, needle, tmp_path):
    import dlkit
    from dlkit.errors import ConversionError

    model, _ = _small_text_model(shape=shape, body="dense", **settings)
    with pytest.raises(ConversionError) as caught:
        dlkit.export(model, tmp_path / "refused.onnx")
    assert needle in str(caught.value) and "\n" not in str(caught.value)
