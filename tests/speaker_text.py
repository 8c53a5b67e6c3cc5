"""The Keras text classifier the text tests share: TextVectorization -> Embedding -> mean -> two Dense layers,
predicting which of the four who speak most in the shipped Tiny Shakespeare slice says a line (sample_models/data:
no ../shared needed), trained for a second or two; and 200 real sentences it has not seen, hard cases first."""

from __future__ import annotations

import numpy as np

SPEAKERS = ["MENENIUS", "CORIOLANUS", "SICINIUS", "BRUTUS"]
SEQUENCE_LENGTH = 12
MAX_TOKENS = 1200  # below the slice's vocabulary: rarer words are out of vocabulary, as in real use


def speaker_lines() -> list[tuple[str, int]]:
    """(line, speaker index) for every spoken line of the four speakers, in file order."""
    from sample_models import datasets

    pairs = []
    for block in datasets.load_text(shipped_only=True).split("\n\n"):
        head, _, body = block.strip("\n").partition("\n")
        if head.endswith(":") and head[:-1] in SPEAKERS:
            pairs += [(line, SPEAKERS.index(head[:-1])) for line in body.splitlines() if line.strip()]
    return pairs


def train_speaker_model(epochs: int = 8):
    """The classifier trained on 80% of the lines (shuffled, seed 0), and the other 20% of the lines."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    pairs = speaker_lines()
    pairs = [pairs[i] for i in np.random.default_rng(0).permutation(len(pairs))]
    split = int(len(pairs) * 0.8)
    lines, labels = [p[0] for p in pairs[:split]], np.array([p[1] for p in pairs[:split]])
    vectorizer = keras.layers.TextVectorization(max_tokens=MAX_TOKENS, output_sequence_length=SEQUENCE_LENGTH)
    vectorizer.adapt(tf.constant(lines))
    text = keras.Input(shape=(1,), dtype="string", name="line")
    x = keras.layers.Embedding(MAX_TOKENS, 16)(vectorizer(text))
    x = keras.layers.GlobalAveragePooling1D()(x)
    x = keras.layers.Dense(16, activation="relu")(x)
    model = keras.Model(text, keras.layers.Dense(len(SPEAKERS), name="speaker")(x))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    data = tf.data.Dataset.from_tensor_slices((tf.constant(lines)[:, None], labels)).shuffle(2048, seed=0).batch(32)
    history = model.fit(data, epochs=epochs, verbose=0, shuffle=False)  # shuffled by the dataset
    assert history.history["loss"][-1] < history.history["loss"][0]  # it learned something about who speaks
    return model, [p[0] for p in pairs[split:]]


def check_sentences(held_out: list[str]) -> list[str]:
    """200 real sentences: held-out lines, after the cases a vectorizer gets wrong first (empty, blank, capitals,
    longer than the sequence, unknown words, punctuation, non-ASCII and emoji, tabs, newlines, no-break spaces)."""
    hard = ["", "   ", held_out[0].upper(), " ".join(held_out[1:7]), " ".join(held_out[-8:]),
            "Zounds, quoth the xylophonist: FLIBBERTIGIBBET!",
            "¿Qué? Été — naïve «MENENIUS» 🙂", "what,\tsay\nyou\u00a0now?", "!!! ... ---", "I' the CAPITOL, sir."]
    return hard + held_out[7:7 + 200 - len(hard)]


def keras_logits(model, sentences: list[str]) -> np.ndarray:
    """What Keras answers for `sentences`, in inference mode."""
    import tensorflow as tf

    return np.asarray(model(tf.constant(sentences)[:, None], training=False))
