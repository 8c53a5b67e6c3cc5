"""Keras 3 model builders for the dlkit sample models.

Importing this module registers the subclassed models (package
``dlkit_samples``) so their ``.keras`` files load with
``keras.models.load_model(path, safe_mode=True)``.

MNIST models take ``pixels`` in [0, 1] and output softmax probabilities:
MLPs take float32 (N, 784), CNNs take float32 (N, 28, 28, 1).
"""
from __future__ import annotations

import keras
from keras import layers

PACKAGE = "dlkit_samples"
VOCAB_SIZE = 65

__all__ = [
    "CharGRU", "SubclassedCNN", "SubclassedMLP", "cnn", "mlp_digits", "mlp_parity",
    "build_model", "inference_copy", "MNIST_MODELS",
]


# ------------------------------------------------------ Sequential / functional
def mlp_parity() -> keras.Sequential:
    """MLP 784-128-128-2: even (0) / odd (1) digit classifier."""
    return keras.Sequential([
        keras.Input(shape=(784,), name="pixels"),
        layers.Dense(128, activation="relu", name="hidden1"),
        layers.Dense(128, activation="relu", name="hidden2"),
        layers.Dense(2, activation="softmax", name="parity"),
    ], name="mlp_parity")


def mlp_digits() -> keras.Sequential:
    """MLP 784-32-10: digit classifier."""
    return keras.Sequential([
        keras.Input(shape=(784,), name="pixels"),
        layers.Dense(32, activation="relu", name="hidden"),
        layers.Dense(10, activation="softmax", name="digit"),
    ], name="mlp_digits")


def cnn() -> keras.Model:
    """Classic Keras MNIST CNN (functional), input (N, 28, 28, 1)."""
    pixels = keras.Input(shape=(28, 28, 1), name="pixels")
    x = layers.Conv2D(32, 3, activation="relu", name="conv1")(pixels)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(64, 3, activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Conv2D(64, 3, activation="relu", name="conv3")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(64, activation="relu", name="dense")(x)
    out = layers.Dense(10, activation="softmax", name="digit")(x)
    return keras.Model(pixels, out, name="cnn")


# ------------------------------------------------------------------ subclassed
@keras.saving.register_keras_serializable(package=PACKAGE)
class SubclassedMLP(keras.Model):
    """Subclassed MLP: Dense(hidden, relu) - Dense(10, softmax) on (N, 784)."""

    def __init__(self, hidden: int = 64, num_classes: int = 10, **kwargs):
        super().__init__(**kwargs)
        self.hidden, self.num_classes = hidden, num_classes
        self.dense1 = layers.Dense(hidden, activation="relu", name="hidden")
        self.dense2 = layers.Dense(num_classes, activation="softmax", name="digit")

    def build(self, input_shape=(None, 784)):
        """Create all weights without data."""
        self.dense1.build(tuple(input_shape))
        self.dense2.build((input_shape[0], self.hidden))

    def call(self, inputs, training=False):
        return self.dense2(self.dense1(inputs))

    def get_config(self):
        return {**super().get_config(), "hidden": self.hidden, "num_classes": self.num_classes}


@keras.saving.register_keras_serializable(package=PACKAGE)
class SubclassedCNN(keras.Model):
    """Small subclassed CNN on (N, 28, 28, 1), ~56k params.

    Conv2D-BN-ReLU-MaxPool, DepthwiseConv2D-BN-ReLU, 1x1 Conv2D-ReLU,
    AveragePooling2D, Conv2D-ReLU, Flatten, Dropout, Dense(10, softmax).
    """

    def __init__(self, filters: int = 32, dropout: float = 0.25, num_classes: int = 10,
                 **kwargs):
        super().__init__(**kwargs)
        self.filters, self.dropout, self.num_classes = filters, dropout, num_classes
        f = filters
        self.conv1 = layers.Conv2D(f, 3, padding="same", use_bias=False, name="conv1")
        self.bn1 = layers.BatchNormalization(name="bn1")
        self.pool1 = layers.MaxPooling2D(2, name="maxpool")
        self.dwconv = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dwconv")
        self.bn2 = layers.BatchNormalization(name="bn2")
        self.pwconv = layers.Conv2D(2 * f, 1, activation="relu", name="pwconv")
        self.pool2 = layers.AveragePooling2D(2, name="avgpool")
        self.conv3 = layers.Conv2D(2 * f, 3, activation="relu", name="conv3")
        self.flatten = layers.Flatten(name="flatten")
        self.drop = layers.Dropout(dropout, name="dropout")
        self.head = layers.Dense(num_classes, activation="softmax", name="digit")

    def build(self, input_shape=(None, 28, 28, 1)):
        """Create all weights by tracing the network symbolically."""
        x = keras.KerasTensor(tuple(input_shape))
        for layer in self._stack():
            if not isinstance(layer, str):
                layer.build(x.shape)
                x = layer.compute_output_spec(x)

    def _stack(self):
        return [self.conv1, self.bn1, "relu", self.pool1, self.dwconv, self.bn2, "relu",
                self.pwconv, self.pool2, self.conv3, self.flatten, self.drop, self.head]

    def call(self, inputs, training=False):
        x = inputs
        for layer in self._stack():
            if isinstance(layer, str):
                x = keras.ops.relu(x)
            elif isinstance(layer, (layers.BatchNormalization, layers.Dropout)):
                x = layer(x, training=training)
            else:
                x = layer(x)
        return x

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "dropout": self.dropout,
                "num_classes": self.num_classes}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CharGRU(keras.Model):
    """Character-level GRU language model returning ``(logits, state)``.

    ``call(x, hidden=None)``: x int32 (N, T) char ids, hidden float32
    (N, units) or None (zeros). logits float32 (N, T, vocab_size) and the
    final GRU state (N, units).
    """

    def __init__(self, vocab_size: int = VOCAB_SIZE, embed_dim: int = 64, units: int = 256,
                 **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.embed_dim, self.units = vocab_size, embed_dim, units
        self.embedding = layers.Embedding(vocab_size, embed_dim, name="embedding")
        self.gru = layers.GRU(units, return_sequences=True, return_state=True, name="gru")
        self.logits = layers.Dense(vocab_size, name="logits")

    def build(self, input_shape=None):
        """Create all weights; shapes depend only on the config."""
        self.embedding.build((None, None))
        self.gru.build((None, None, self.embed_dim))
        self.logits.build((None, None, self.units))

    def call(self, x, hidden=None, training=False):
        h = self.embedding(x)
        if hidden is None:
            seq, state = self.gru(h, training=training)
        else:
            seq, state = self.gru(h, initial_state=[hidden], training=training)
        return self.logits(seq), state

    def initial_state(self, batch_size: int):
        """Zero hidden state (batch_size, units)."""
        return keras.ops.zeros((batch_size, self.units), dtype="float32")

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size,
                "embed_dim": self.embed_dim, "units": self.units}

    def get_build_config(self):
        return {"input_shape": [None, None]}

    def build_from_config(self, config):
        """Always build every sublayer (hidden may be absent from the call)."""
        self.build(None)


# ------------------------------------------------------------------- helpers
MNIST_MODELS = {
    # name: (builder, input kind, label kind)
    "mlp_parity": (mlp_parity, "mlp", "parity"),
    "mlp_digits": (mlp_digits, "mlp", "digits"),
    "cnn": (cnn, "cnn", "digits"),
    "subclassed_mlp": (lambda: SubclassedMLP(name="subclassed_mlp"), "mlp", "digits"),
    "subclassed_cnn": (lambda: SubclassedCNN(name="subclassed_cnn"), "cnn", "digits"),
}


def build_model(name: str) -> keras.Model:
    """Build (weights created, untrained) the MNIST model ``name`` or ``char_gru``."""
    if name == "char_gru":
        model = CharGRU(name="char_gru")
        model.build(None)
        return model
    if name not in MNIST_MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MNIST_MODELS)}")
    builder, kind, _ = MNIST_MODELS[name]
    model = builder()
    if not model.built:
        model.build((None, 784) if kind == "mlp" else (None, 28, 28, 1))
    return model


def inference_copy(model: keras.Model) -> keras.Model:
    """Uncompiled copy of ``model`` with the same weights (no optimizer state)."""
    fresh = model.__class__.from_config(model.get_config())
    if not fresh.built:
        config = model.get_build_config()
        fresh.build_from_config(config) if config else fresh.build(None)
    fresh.set_weights(model.get_weights())
    return fresh
