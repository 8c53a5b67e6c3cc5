"""Train the `mobilenet` sample model on `data/photos/` (see make_photos.py).

The model a Raspberry Pi user typically brings from a Keras transfer-learning tutorial, but trained
from scratch (no pretrained weights are downloaded):

    image (N, 128, 128, 3) float32, raw pixels 0-255
      -> Resizing(96, 96) -> Rescaling(1/127.5, offset=-1)
      -> MobileNetV2(alpha=0.35, include_top=False, weights=None)
      -> GlobalAveragePooling2D -> Dropout(0.2) -> Dense(4) "logits" (no softmax)

Writes `trained/mobilenet.keras`, `trained/labels_photos.txt` and the "mobilenet" entry of
`trained/metrics.json` (test accuracy measured with `model.evaluate` on the reloaded file).

    python sample_models/train_mobilenet.py                # 40 epochs, ~23 min on 2 busy CPU cores
    python sample_models/train_mobilenet.py --epochs 2 --out /tmp/try
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "photos"
TRAINED = HERE / "trained"
IMAGE_SIZE = (128, 128)
SEED = 0


def build_model(num_classes: int, dropout: float = 0.2, alpha: float = 0.35) -> keras.Model:
    inputs = keras.Input((128, 128, 3), name="image")
    x = keras.layers.Resizing(96, 96, name="resize")(inputs)
    x = keras.layers.Rescaling(1 / 127.5, offset=-1, name="rescale")(x)
    backbone = keras.applications.MobileNetV2(
        input_shape=(96, 96, 3), alpha=alpha, include_top=False, weights=None
    )
    x = backbone(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="mobilenet")


def load_split(data: Path, split: str, shuffle: bool, batch_size: int) -> tf.data.Dataset:
    return keras.utils.image_dataset_from_directory(
        data / split,
        labels="inferred",
        label_mode="int",
        color_mode="rgb",
        image_size=IMAGE_SIZE,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=SEED,
    )


def augmenter() -> keras.Sequential:
    """Training-time augmentation, applied in tf.data (not part of the saved model)."""
    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=SEED + 1),
            keras.layers.RandomCrop(108, 108, seed=SEED + 2),  # crops of 84% side ...
            keras.layers.Resizing(128, 128),  # ... back to the model's input size
            keras.layers.RandomContrast(0.2, seed=SEED + 3),
            keras.layers.RandomBrightness(0.1, value_range=(0, 255), seed=SEED + 4),
        ],
        name="augment",
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--alpha", type=float, default=0.35, help="MobileNetV2 width multiplier")
    ap.add_argument("--out", type=Path, default=TRAINED)
    ap.add_argument("--data", type=Path, default=DATA, help="photo folder with train/ and test/ (make_photos.py's --out)")
    ap.add_argument("--jit", action="store_true", help="train with XLA (slower on CPU here)")
    ap.add_argument("--no-monitor", action="store_true",
                    help="do not print test accuracy during training")
    args = ap.parse_args(argv)
    if not (args.data / "train").is_dir():
        sys.exit(f"{args.data}/train not found: run `python sample_models/make_photos.py` first")

    keras.utils.set_random_seed(SEED)
    train_raw = load_split(args.data, "train", True, args.batch_size)
    test_ds = load_split(args.data, "test", False, 64)
    class_names = train_raw.class_names
    assert class_names == sorted(class_names) == test_ds.class_names, class_names

    aug = augmenter()

    def augment(x, y):
        x = tf.clip_by_value(aug(x, training=True), 0.0, 255.0)
        return x, y

    # decode the JPEGs once (uint8 in memory), augment every epoch
    train_ds = (train_raw.unbatch().map(lambda x, y: (tf.cast(x, tf.uint8), y)).cache()
                .shuffle(4096, seed=SEED).batch(args.batch_size)
                .map(lambda x, y: augment(tf.cast(x, tf.float32), y),
                     num_parallel_calls=tf.data.AUTOTUNE).prefetch(2))
    test_ds = test_ds.cache().prefetch(2)

    model = build_model(len(class_names), alpha=args.alpha)
    # Keras's MobileNetV2 uses BatchNorm momentum 0.999, too slow for ~2,500 steps from scratch: the
    # moving statistics (what inference uses) would still lag the weights. Train with 0.99, then put
    # 0.999 back so the saved config is the stock architecture.
    bns = [l for l in model._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]
    for bn in bns:
        bn.momentum = 0.99
    steps = args.epochs * int(train_raw.cardinality())  # batches per epoch (train_ds: unknown)
    schedule = keras.optimizers.schedules.CosineDecay(
        1e-4, decay_steps=steps - min(200, steps // 10), warmup_target=args.lr,
        warmup_steps=min(200, steps // 10), alpha=0.02,
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=1e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=args.jit,
    )
    t0 = time.time()
    hist = model.fit(
        train_ds,
        epochs=args.epochs,
        validation_data=None if args.no_monitor else test_ds,
        verbose=2,
    )
    train_seconds = time.time() - t0
    print(f"trained {args.epochs} epochs in {train_seconds:.0f} s")

    for bn in bns:
        bn.momentum = 0.999
    # the saved file is the inference copy: uncompiled, BatchNorm uses its moving statistics
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "mobilenet.keras"
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    _, acc_trained = model.evaluate(test_ds, verbose=0)
    # same layers, single input and output tensors (not lists), no optimizer or compile config
    infer = keras.Model(model.inputs[0], model.outputs[0], name="mobilenet")
    infer.save(path)
    (args.out / "labels_photos.txt").write_text("".join(c + "\n" for c in class_names))

    reloaded = keras.models.load_model(path, safe_mode=True)
    for a, b in zip(model.weights, reloaded.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    reloaded.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                     metrics=["accuracy"])
    test_loss, test_acc = reloaded.evaluate(test_ds, verbose=0)
    assert abs(test_acc - acc_trained) < 1e-6, (test_acc, acc_trained)
    _, train_acc = reloaded.evaluate(load_split(args.data, "train", False, 64), verbose=0)

    # per-class test accuracy
    y_true = np.concatenate([y.numpy() for _, y in test_ds])
    y_pred = np.argmax(reloaded.predict(test_ds, verbose=0), axis=1)
    per_class = {
        c: {"count": int((y_true == i).sum()),
            "accuracy": round(float((y_pred[y_true == i] == i).mean()), 4)}
        for i, c in enumerate(class_names)
    }
    train_counts = {c: len(list((args.data / "train" / c).glob("*.jpg"))) for c in class_names}
    print(f"test accuracy {test_acc:.4f} (loss {test_loss:.4f}), train accuracy {train_acc:.4f}")
    print("per class:", per_class)

    metrics_path = args.out / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {"models": {}}
    metrics.setdefault("models", {})["mobilenet"] = {
        "task": "photo class: " + ", ".join(class_names),
        "input": "image float32 (N, 128, 128, 3), raw RGB pixels 0-255",
        "output": "logits float32 (N, 4), no softmax; classes in labels_photos.txt order",
        "test_accuracy": round(float(test_acc), 4),
        "test_loss": round(float(test_loss), 4),
        "train_accuracy_no_augmentation": round(float(train_acc), 4),
        "test_set": f"data/photos/test ({len(y_true)} new composites of the training stamps, on held-out background "
                    "regions)",
        "test_per_class": per_class,
        "train_per_class": train_counts,
        "params": int(reloaded.count_params()),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "optimizer": f"AdamW (weight decay 1e-4), warmup + cosine decay, peak lr {args.lr}",
        "train_data": f"data/photos/train ({sum(train_counts.values())} composites) with random "
                      "flip/crop/contrast/brightness",
        "train_seconds": round(train_seconds, 1),
        "final_train_loss": round(float(hist.history["loss"][-1]), 4),
        "versions": {"keras": keras.__version__, "tensorflow": tf.__version__,
                     "python": platform.python_version()},
        "files": {"mobilenet.keras": path.stat().st_size},
    }
    metrics["models"] = dict(sorted(metrics["models"].items()))
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
