"""Small helpers shared by the training scripts (paths, seeds, metrics.json)."""
from __future__ import annotations

import json
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
TRAINED_DIR = HERE / "trained"


def quiet_tf() -> None:
    """Reduce TensorFlow log noise (call before importing keras)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def seed_everything(seed: int = 0) -> None:
    """Seed Python, numpy and the backend."""
    import keras
    keras.utils.set_random_seed(seed)


def file_size(path: Path) -> int:
    """Size of a file in bytes."""
    return Path(path).stat().st_size


def update_metrics(name: str, entry: dict, folder: Path = TRAINED_DIR) -> dict:
    """Merge ``entry`` under ``models[name]`` of ``folder``/metrics.json and write it."""
    folder.mkdir(parents=True, exist_ok=True)
    metrics = folder / "metrics.json"
    data = json.loads(metrics.read_text()) if metrics.is_file() else {}
    data.setdefault("models", {})[name] = entry
    data["models"] = dict(sorted(data["models"].items()))
    import keras
    import numpy as np
    import tensorflow as tf
    data["versions"] = {"keras": keras.__version__, "tensorflow": tf.__version__,
                        "numpy": np.__version__}
    metrics.write_text(json.dumps(data, indent=2) + "\n")
    return data


def write_labels(folder: Path = TRAINED_DIR) -> None:
    """Write labels_digits.txt (0-9) and labels_parity.txt (even, odd)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "labels_digits.txt").write_text("".join(f"{i}\n" for i in range(10)))
    (folder / "labels_parity.txt").write_text("even\nodd\n")
