"""dlkit_runtime.text: Keras' TextVectorization without TensorFlow, token for token, and text models in `Model`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dlkit_runtime import InvalidInputError, Model
from dlkit_runtime.datafiles import read_inputs
from dlkit_runtime.text import TextVectorizer

# What Keras' string ops do and Python's do not (or the other way round): non-ASCII case (tf.strings.lower is ASCII
# only), non-ASCII punctuation (Keras strips the 32 ASCII marks only), Unicode whitespace (tf.strings.split cuts at
# ASCII whitespace only), code points beyond the BMP, combining marks, NUL, and the empty string.
TRICKY = [
    "Hello, WORLD! It's 3:30pm... isn't it?",
    "ÉTÉ Été İstanbul ΣΑΣ STRASSE straße ǅemal",
    "a\u00a0b\x1cc\u2003d\te\nf\x0bg\x0ch\ri\x85j\u2028k",
    "«quoted» ¿qué? — dash… ’curly’ “double”",
    "tab\tsep[bracket]{brace}|pipe~tilde^caret_under`back\\slash\"quote'apos@at#hash$dollar%per&amp*star+plus",
    "emoji 🙂 and 👍🏽 ZWJ 👨‍👩‍👧 done",
    "combining e\u0301 vs é, NUL\x00inside",
    "", "   ", "!!!", "x", "   leading and trailing   ",
    "THE the The tHe", "one two three four five six seven eight nine ten eleven twelve thirteen fourteen",
]
UNSEEN = ["Ωŋ completely unseen wordz", "Été? ÉTÉ! été.", "zz\u00a0top", "", "the", "👍"]


def _keras_layer(**kwargs):
    tf = pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    layer = keras.layers.TextVectorization(**kwargs)
    layer.adapt(tf.constant(TRICKY))
    return layer, tf


def _settings(layer, **extra) -> dict:
    mode = layer._output_mode
    settings = {"input": "text", "vocabulary": [str(t) for t in layer.get_vocabulary()],
                "standardize": layer._standardize,
                "split": layer._split, "ngrams": list(layer._ngrams) if layer._ngrams else None, "output_mode": mode,
                "output_sequence_length": layer._output_sequence_length,
                "dtype": "int64" if mode == "int" else "float32", **extra}
    if mode == "tf_idf":
        settings["idf_weights"] = [float(w) for w in np.asarray(layer._lookup_layer.idf_weights_const)]
    return settings


@pytest.mark.parametrize("standardize", ["lower_and_strip_punctuation", "lower", "strip_punctuation", None])
@pytest.mark.parametrize("split", ["whitespace", "character", None])
def test_token_ids_match_keras(standardize, split):
    layer, tf = _keras_layer(standardize=standardize, split=split, output_sequence_length=12)
    vectorizer = TextVectorizer(_settings(layer))
    texts = TRICKY + UNSEEN
    want = np.asarray(layer(tf.constant(texts)[:, None]))
    got = vectorizer(texts)
    assert got.dtype == np.int64 and got.shape == want.shape == (len(texts), 12)
    np.testing.assert_array_equal(got, want)  # exact: one token off is a different sentence
    assert (got == 1).any()  # out-of-vocabulary tokens happen (UNSEEN), and map to 1 as in Keras


def test_standardize_is_ascii_only_as_in_keras():
    vectorizer = TextVectorizer({"input": "t", "vocabulary": ["", "[UNK]"], "standardize": "lower_and_strip_punctuation",
                                 "split": "whitespace", "output_mode": "int", "output_sequence_length": 4})
    assert vectorizer.standardize("ÉTÉ İ ΣΑΣ Hello, World!") == "ÉtÉ İ ΣΑΣ hello world"
    assert vectorizer.standardize("«a» ’b’ ¿c? d-e") == "«a» ’b’ ¿c de"
    assert vectorizer.tokens("a\u00a0b c\td\u2003e") == ["a\u00a0b", "c", "d\u2003e"]


@pytest.mark.parametrize("ngrams", [2, (1, 3), (2, 1)])
def test_ngrams_match_keras(ngrams):
    layer, tf = _keras_layer(ngrams=ngrams, output_sequence_length=40)
    texts = TRICKY + UNSEEN
    np.testing.assert_array_equal(TextVectorizer(_settings(layer))(texts), np.asarray(layer(tf.constant(texts)[:, None])))


def test_unset_sequence_length_pads_to_the_longest_as_keras():
    layer, tf = _keras_layer()
    texts = ["the the the", "", "one two"]
    want = np.asarray(layer(tf.constant(texts)[:, None]))
    got = TextVectorizer(_settings(layer))(texts)
    assert got.shape == want.shape == (3, 3)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("mode, extra", [("multi_hot", {}), ("count", {"ngrams": 2}),
                                         ("tf_idf", {"max_tokens": 40, "pad_to_max_tokens": True})])
def test_counting_modes_match_keras(mode, extra):
    layer, tf = _keras_layer(output_mode=mode, **extra)
    depth = int(layer._lookup_layer.max_tokens if layer._lookup_layer.pad_to_max_tokens else layer.vocabulary_size())
    texts = TRICKY + UNSEEN
    want = np.asarray(layer(tf.constant(texts)[:, None]), dtype=np.float32)
    got = TextVectorizer(_settings(layer, depth=depth))(texts)
    assert got.dtype == np.float32 and got.shape == want.shape == (len(texts), depth)
    np.testing.assert_array_equal(got, want)  # counts times float32 IDF weights: the same float32 products


# --- a text model in Model: a tiny ONNX graph behind the metadata dlkit export writes --------------------------------

VOCABULARY = ["", "[UNK]", "the", "cat", "sat", "dog"]


@pytest.fixture(scope="module")
def text_onnx(tmp_path_factory):
    """text int64 (N, 4) -> scores float32 (N, 2): an embedding's average through a linear layer."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    table, weights = rng.standard_normal((6, 3)).astype(np.float32), rng.standard_normal((3, 2)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "text"], ["vectors"]),
         helper.make_node("ReduceMean", ["vectors"], ["mean"], axes=[1], keepdims=0),
         helper.make_node("MatMul", ["mean", "w"], ["scores"])],
        "text", [helper.make_tensor_value_info("text", TensorProto.INT64, ["N", 4])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(table, "table"), numpy_helper.from_array(weights, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    settings = {"input": "text", "vocabulary": VOCABULARY, "standardize": "lower_and_strip_punctuation",
                "split": "whitespace", "ngrams": None, "output_mode": "int", "output_sequence_length": 4,
                "dtype": "int64"}
    helper.set_model_props(model, {"dlkit.text_vectorization": json.dumps(settings)})
    path = tmp_path_factory.mktemp("text") / "text.onnx"
    onnx.save(model, path)
    return path


def test_predict_takes_strings(text_onnx):
    model = Model(text_onnx)
    ids = np.array([[2, 3, 4, 0], [2, 1, 5, 3]], dtype=np.int64)  # "The cat sat!" and "the BIRD, dog cat too" cut to 4
    want = model.predict(ids)["scores"]
    for x in (["The cat sat!", "the BIRD, dog cat too"], np.array([["The cat sat!"], ["the BIRD, dog cat too"]]),
              {"text": ("The cat sat!", "the BIRD, dog cat too")}, [b"The cat sat!", "the BIRD, dog cat too".encode()]):
        np.testing.assert_array_equal(model.predict(x)["scores"], want)
    assert model.predict("the cat")["scores"].shape == (1, 2)
    assert [p.index for p in model.classify(["The cat sat!"], top_k=1)[0]] == [int(np.argmax(want[0]))]


def test_read_inputs_takes_text_and_txt_files(text_onnx, tmp_path):
    model = Model(text_onnx)
    np.testing.assert_array_equal(read_inputs("The cat, the DOG!", model), [[2, 3, 2, 5]])
    lines = tmp_path / "lines.txt"
    lines.write_text("the cat\n\nsat sat sat sat sat\n", encoding="utf-8")
    np.testing.assert_array_equal(read_inputs(lines, model), [[2, 3, 0, 0], [0, 0, 0, 0], [4, 4, 4, 4]])
    with pytest.raises(InvalidInputError, match="'missing.txt' does not exist"):
        read_inputs("missing.txt", model)


@pytest.mark.parametrize("x, needle", [([1.5, "a"], "float at position 0"), ([b"\xff"], "not UTF-8"),
                                        (np.array([["a", "b"]]), "shape (N,) or (N, 1)")])
def test_bad_text_is_a_one_line_error(text_onnx, x, needle):
    with pytest.raises(InvalidInputError) as caught:
        Model(text_onnx).predict(x)
    assert needle in str(caught.value) and "\n" not in str(caught.value)


def test_damaged_settings_are_refused():
    with pytest.raises(InvalidInputError, match="metadata is damaged"):
        TextVectorizer({"vocabulary": VOCABULARY})
    with pytest.raises(InvalidInputError, match="split='sentencepiece'"):
        TextVectorizer({"input": "t", "vocabulary": VOCABULARY, "split": "sentencepiece"})
