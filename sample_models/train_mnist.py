"""Train the five MNIST sample models and save them to ``trained/``.

Uses the full MNIST training set from ``../shared/data/mnist`` when present,
else the shipped 10k subset. Writes ``trained/<name>.keras`` (all models),
``trained/<name>.h5`` (non-subclassed ones), labels files and metrics.json.

Usage: python sample_models/train_mnist.py [--model NAME|all] [--epochs N]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if not __package__:  # run as a script: make ``sample_models`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sample_models import _trainutil as U  # noqa: E402

U.quiet_tf()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from sample_models import architectures as A  # noqa: E402
from sample_models import datasets as D  # noqa: E402

#: Per-model defaults: epochs, batch size, learning rate.
DEFAULTS = {
    "mlp_parity": (5, 128, 1e-3),
    "mlp_digits": (10, 32, 1e-3),
    "cnn": (5, 64, 1e-3),
    "subclassed_mlp": (10, 32, 1e-3),
    "subclassed_cnn": (4, 64, 2e-3),
}
H5_MODELS = ("mlp_parity", "mlp_digits", "cnn")


def accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of a softmax model."""
    probs = model.predict(x, batch_size=500, verbose=0)
    return float(np.mean(np.argmax(probs, axis=-1) == y))


def train_one(name: str, epochs: int | None, shipped_only: bool, verbose: int,
              out: Path = U.TRAINED_DIR) -> dict:
    """Train, save and evaluate one model; returns its metrics entry."""
    _, kind, label_kind = A.MNIST_MODELS[name]
    n_epochs, batch, lr = DEFAULTS[name]
    n_epochs = epochs or n_epochs
    x_img, y_train = D.load_mnist("train", shipped_only=shipped_only)
    data_kind = D.mnist_source("train", shipped_only=shipped_only)[2]
    t_img, y_test = D.load_mnist("test", shipped_only=shipped_only)
    x_train, x_test = D.mnist_for(kind, x_img), D.mnist_for(kind, t_img)
    if label_kind == "parity":
        y_train, y_test = D.parity_labels(y_train), D.parity_labels(y_test)

    U.seed_everything(0)
    model = A.build_model(name)
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    print(f"== {name}: {model.count_params()} params, {len(x_train)} train images "
          f"({data_kind}), {n_epochs} epochs", flush=True)
    t0 = time.perf_counter()
    hist = model.fit(x_train, y_train.astype("int32"), batch_size=batch, epochs=n_epochs,
                     shuffle=True, verbose=verbose)
    seconds = time.perf_counter() - t0

    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.keras"
    clean = A.inference_copy(model)  # uncompiled: no optimizer state in the file
    clean.save(path)
    files = {path.name: U.file_size(path)}
    # Evaluate the file that ships, reloaded in safe mode.
    reloaded = keras.models.load_model(path, safe_mode=True)
    acc = accuracy(reloaded, x_test, y_test)
    if name in H5_MODELS:
        h5 = out / f"{name}.h5"
        clean.save(h5)
        files[h5.name] = U.file_size(h5)
        h5_model = keras.models.load_model(h5, compile=False)
        diff = np.abs(h5_model.predict(x_test[:256], verbose=0)
                      - reloaded.predict(x_test[:256], verbose=0)).max()
        if diff > 1e-6:
            raise RuntimeError(f"{h5.name} disagrees with {path.name} (max diff {diff})")
    print(f"   {name}: test accuracy {acc:.4f}  (train loss {hist.history['loss'][-1]:.4f}, "
          f"{seconds:.1f}s)", flush=True)
    return {
        "task": "parity (even/odd)" if label_kind == "parity" else "digit 0-9",
        "input": ("inputs" if name.startswith("subclassed") else "pixels")
        + (" float32 (N, 784)" if kind == "mlp" else " float32 (N, 28, 28, 1)"),
        "test_accuracy": round(acc, 4),
        "test_set": f"MNIST t10k ({len(y_test)} images)",
        "params": int(model.count_params()),
        "epochs": n_epochs,
        "batch_size": batch,
        "train_data": f"{data_kind} MNIST train ({len(y_train)} images)",
        "train_seconds": round(seconds, 1),
        "final_train_loss": round(float(hist.history["loss"][-1]), 4),
        "files": files,
    }


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="all", choices=["all", *A.MNIST_MODELS])
    ap.add_argument("--epochs", type=int, default=None,
                    help="override the per-model default epochs")
    ap.add_argument("--shipped-only", action="store_true",
                    help="train on the shipped 10k subset even if the full data exists")
    ap.add_argument("--verbose", type=int, default=2, help="Keras fit verbosity")
    ap.add_argument("--out", type=Path, default=U.TRAINED_DIR,
                    help="output folder (default: sample_models/trained)")
    args = ap.parse_args(argv)
    names = list(A.MNIST_MODELS) if args.model == "all" else [args.model]
    U.write_labels(args.out)
    t0 = time.perf_counter()
    results = {}
    for name in names:
        results[name] = entry = train_one(name, args.epochs, args.shipped_only, args.verbose,
                                          args.out)
        U.update_metrics(name, entry, args.out)
    print(f"\nTotal training+saving time: {time.perf_counter() - t0:.1f}s")
    for name, e in results.items():
        print(f"{name:16s} acc={e['test_accuracy']:.4f} params={e['params']:7d} "
              f"time={e['train_seconds']:6.1f}s files={e['files']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
