"""Tiny models whose outputs are not class scores, built offline with random weights and exported once per session:
KerasHub's RetinaNet (detections) and a conv net with a per-pixel softmax and an L2-normalized embedding."""

from __future__ import annotations

import numpy as np

IMAGE = (64, 64, 3)
_CACHE: dict = {}


def images(count: int, seed: int) -> np.ndarray:
    """Random images in [0, 1), what the detector was tuned to find boxes in."""
    return np.random.default_rng(seed).random((count, *IMAGE)).astype(np.float32)


def retinanet():
    """A RetinaNetObjectDetector (3 classes) on a tiny ResNet, its heads set to find confident boxes in random images.

    Random weights give sigmoid scores near the prior (0.01) and deltas that throw boxes far outside the image: the
    classification logits are scaled to a spread of 2 and shifted so that about 2% of (anchor, class) cells score
    above 0.5 (10-20 detections an image after NonMaxSuppression), and the box deltas are scaled down so the boxes
    stay near their anchors. Scores spread over (0.5, 1) keep NonMaxSuppression free of ties.
    """
    import keras
    import keras_hub

    keras.utils.set_random_seed(0)
    encoder = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 16, 16, 16],
        stackwise_num_blocks=[1, 1, 1, 1], stackwise_num_strides=[1, 2, 2, 2], block_type="basic_block",
        use_pre_activation=False, image_shape=IMAGE)
    backbone = keras_hub.models.RetinaNetBackbone(image_encoder=encoder, min_level=3, max_level=5, use_p5=False,
                                                  image_shape=IMAGE)
    model = keras_hub.models.RetinaNetObjectDetector(backbone=backbone, num_classes=3, pre_logits_num_conv_layers=1)
    x = images(8, seed=0)
    logits_layer = model.classification_head._layers[-1]
    logits = np.asarray(model(x)["cls_logits"])
    logits_layer.kernel.assign(logits_layer.kernel.numpy() * (2.0 / logits.std()))
    logits = np.asarray(model(x)["cls_logits"])
    logits_layer.bias.assign(logits_layer.bias.numpy() - np.quantile(logits, 0.98))
    box_layer = model.box_head._layers[-1]
    box_layer.kernel.assign(box_layer.kernel.numpy() * 0.05)
    box_layer.bias.assign(np.zeros(box_layer.bias.shape, np.float32))
    return model


def segmenter():
    """A conv net on 16x16 RGB: a per-pixel softmax over 4 classes ('mask') and an L2-normalized 8-vector ('embedding')."""
    import keras

    keras.utils.set_random_seed(1)
    inputs = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    mask = keras.layers.Conv2D(4, 1, activation="softmax", name="mask")(x)
    pooled = keras.layers.Dense(8)(keras.layers.GlobalAveragePooling2D()(x))
    embedding = keras.layers.UnitNormalization(name="embedding")(pooled)
    return keras.Model(inputs, {"mask": mask, "embedding": embedding}, name="segmenter")


def exported(kind: str, tmp_path_factory) -> dict:
    """{"keras": the saved .keras file, "onnx": its export, "model": the Keras model, "result": the ExportResult},
    built once per session."""
    if kind not in _CACHE:
        import dlkit

        folder = tmp_path_factory.mktemp(kind)
        model = retinanet() if kind == "retinanet" else segmenter()
        model.save(folder / f"{kind}.keras")
        sample = {"sample_data": {"images": images(8, seed=1)}} if kind == "retinanet" else {}
        result = dlkit.export(model, folder / f"{kind}.onnx", num_samples=8, **sample)
        _CACHE[kind] = {"keras": folder / f"{kind}.keras", "onnx": folder / f"{kind}.onnx", "model": model,
                        "result": result}
    return _CACHE[kind]
