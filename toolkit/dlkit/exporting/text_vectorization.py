"""Text models: a string Input that feeds a Keras `TextVectorization` layer exports as the numeric model behind the
layer (token ids in), and the layer itself moves into the metadata (`dlkit.text_vectorization`: vocabulary and
settings), which `dlkit_runtime.text.TextVectorizer` applies on the device without TensorFlow.

The export is checked twice: the numeric model on the token ids Keras' layer makes of the check sentences (the usual
gate), then from strings to outputs: dlkit_runtime's vectorizer must give Keras' token ids exactly, and onnxruntime on
them Keras' outputs on the strings within tolerance (`text_checks.check_strings`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from dlkit.core.tensors import TensorInfo
from dlkit.errors import ConversionError
from dlkit_runtime.text import OUTPUT_MODES, SPLIT, STANDARDIZE

_STRING_DTYPES = ("string", "str", "object", "bytes")


@dataclass
class TextFront:
    """The TextVectorization a text model starts with, moved out of the exported graph.

    Attributes:
        layer: the Keras layer.
        settings: what `dlkit_runtime.text.TextVectorizer` needs, JSON-safe, `input` named as in Keras.
        string_call: the whole Keras model, strings (shaped as its Input) -> {output name: tensor}.
        string_shape: the string Input's shape without the batch axis: () or (1,).
        sentences: the check sentences, once `check_feeds` has chosen them.
    """

    layer: Any
    settings: dict
    string_call: Callable[..., dict]
    string_shape: tuple
    sentences: list[str] | None = field(default=None)

    def keras_strings(self, sentences: list[str]) -> Any:
        """`sentences` as the tf.string tensor the Keras model takes."""
        import tensorflow as tf

        return tf.reshape(tf.constant(sentences, dtype=tf.string), (len(sentences), *self.string_shape))

    def keras_ids(self, sentences: list[str]) -> np.ndarray:
        """What Keras' layer makes of `sentences`, in the dtype of the exported model's input."""
        return np.asarray(self.layer(self.keras_strings(sentences))).astype(self.settings["dtype"])

    def check_feeds(self, sample_data: Any, num_samples: int, seed: int) -> tuple[dict[str, np.ndarray], str]:
        """The check sentences (from `sample_data`, else made from the vocabulary) as Keras' token ids, keyed by the
        ONNX input, and where they come from (`samples.reference_run` calls this for a text model)."""
        from dlkit.exporting.text_checks import check_sentences

        self.sentences, label = check_sentences(self, sample_data, num_samples, seed)
        return {self.settings["input"]: self.keras_ids(self.sentences)}, label


def numeric_source(source):
    """`source` unchanged, or for a model whose string input feeds a TextVectorization: the model behind the layer,
    taking its token ids (int64 (N, output_sequence_length), or float32 (N, depth) for the counting modes) under the
    string input's name, with the layer as `source.text`.

    Raises:
        ConversionError: a string input that does not feed a TextVectorization first, or a layer setting that the
            runtime cannot reproduce (a custom standardize or split callable, output_mode "one_hot", sparse or ragged
            outputs, another encoding than UTF-8, no vocabulary).
    """
    strings = [i for i in source.inputs if str(i.dtype) in _STRING_DTYPES]
    if not strings:
        return source
    name = strings[0].name
    if source.keras_model is None:
        raise ConversionError(f"{source.description} takes strings (input '{name}') but is not a Keras model; export "
                              "its .keras file, whose TextVectorization layer dlkit moves into the runtime")
    if len(source.inputs) != 1:
        raise ConversionError(f"{source.description} takes strings (input '{name}') beside other inputs; dlkit exports "
                              "a text model with one string input only")
    import keras

    from dlkit.exporting.keras_loading import _named_outputs

    model = source.keras_model
    layer, ids = _vectorizer_of(model, keras.tree.flatten(model.inputs)[0], name)
    settings = layer_settings(layer, name, ids)
    sub = keras.Model(ids, model.outputs, name=f"{model.name}_numeric")

    def call(*args):
        return _named_outputs(model, sub(args[0], training=False))

    ids_info = TensorInfo(name, settings["dtype"], (None, *ids.shape[1:]))
    front = TextFront(layer, settings, source.call, tuple(strings[0].shape[1:]))
    note = (f"input '{name}' takes {'token ids' if settings['output_mode'] == 'int' else settings['output_mode']} "
            f"from TextVectorization '{layer.name}' ({len(settings['vocabulary'])} tokens), which dlkit_runtime "
            "applies to strings (metadata dlkit.text_vectorization)")
    return dataclasses.replace(source, inputs=(ids_info,), call=call, keras_model=sub, text=front,
                               notes=(*source.notes, note))


def _vectorizer_of(model: Any, tensor: Any, name: str) -> tuple[Any, Any]:
    """The TextVectorization layer that takes `tensor` (the string Input) and the tensor it makes of it."""
    import keras

    users = [(layer, node) for layer in model._flatten_layers(include_self=False)
             for node in getattr(layer, "_inbound_nodes", ())
             if any(t is tensor for t in keras.tree.flatten(node.input_tensors))]
    vectorizers = [(layer, node) for layer, node in users if isinstance(layer, keras.layers.TextVectorization)]
    if len(users) != 1 or not vectorizers:
        found = ", ".join(f"'{layer.name}' ({type(layer).__name__})" for layer, _ in users) or "nothing"
        raise ConversionError(f"string input '{name}' of model {model.name} feeds {found}; dlkit exports a string "
                              "input only into one keras.layers.TextVectorization layer, the first after the Input")
    layer, node = vectorizers[0]
    return layer, keras.tree.flatten(node.output_tensors)[0]


def layer_settings(layer: Any, input_name: str, ids: Any) -> dict:
    """The settings `dlkit_runtime.text.TextVectorizer` needs, after checking that it can reproduce the layer.

    Raises:
        ConversionError: a setting the runtime does not reproduce; the message names it and the fix.
    """
    import keras

    where = f"TextVectorization layer '{layer.name}'"
    for setting, value, allowed in (("standardize", layer._standardize, STANDARDIZE), ("split", layer._split, SPLIT)):
        if callable(value):
            raise ConversionError(f"{where} has a custom {setting} callable ({getattr(value, '__name__', value)}), which "
                                  f"dlkit_runtime cannot run; use {setting}= one of {', '.join(map(repr, allowed))} "
                                  "and apply your function to the strings before the model")
    mode = layer._output_mode
    if mode not in OUTPUT_MODES:
        raise ConversionError(f"{where} has output_mode={mode!r}, which dlkit does not export; use one of "
                              f"{', '.join(map(repr, OUTPUT_MODES))}")
    lookup = layer._lookup_layer
    for setting, value, want in (("sparse", lookup.sparse, False), ("ragged", layer._ragged, False),
                                 ("encoding", str(layer._encoding).lower().replace("_", "-"), "utf-8")):
        if value != want:
            raise ConversionError(f"{where} has {setting}={value!r}, which dlkit does not export; use {setting}={want!r}")
    vocabulary = [str(token) for token in layer.get_vocabulary()]
    if len(vocabulary) <= (2 if mode == "int" else 1):
        raise ConversionError(f"{where} has no vocabulary; adapt() it or pass vocabulary= before exporting")
    rank = len(ids.shape)
    if rank != 2:
        raise ConversionError(f"{where} makes rank-{rank} outputs from input '{input_name}' for output_mode={mode!r}; "
                              "dlkit exports (batch, tokens) or (batch, depth) only: give the string Input shape="
                              f"{'(1,)' if rank < 2 else '()'}")
    settings = {
        "input": input_name, "layer": layer.name, "vocabulary": vocabulary, "standardize": layer._standardize,
        "split": layer._split, "ngrams": list(layer._ngrams) if layer._ngrams else None, "output_mode": mode,
        "output_sequence_length": layer._output_sequence_length, "max_tokens": lookup.max_tokens,
        "pad_to_max_tokens": bool(lookup.pad_to_max_tokens), "mask_token": lookup.mask_token,
        "oov_token": lookup.oov_token, "dtype": keras.backend.standardize_dtype(ids.dtype),
    }
    if mode != "int":
        settings["depth"] = int(lookup.max_tokens if lookup.pad_to_max_tokens else layer.vocabulary_size())
        if mode == "tf_idf":
            settings["idf_weights"] = [float(w) for w in np.asarray(lookup.idf_weights_const, dtype=np.float32)]
    return settings

