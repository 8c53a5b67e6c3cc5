"""`dlkit run MODEL -i FOLDER`: every image in a folder (and its sub-folders, in sorted path order), run in batches,
one JSON line per file with its path: what a camera's folder of JPEGs needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

BATCH = 32  # images decoded and run at a time: a Pi's memory holds 32 decoded photos easily


def image_files(folder: Path) -> list[Path]:
    """The folder's images, sorted by path.

    Raises:
        InvalidInputError: the folder holds no image.
    """
    from dlkit_runtime.errors import InvalidInputError
    from dlkit_runtime.images import SUFFIXES

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    if not files:
        raise InvalidInputError(f"input folder '{folder}' holds no images ({', '.join(SUFFIXES)}); give a folder "
                                "of photos, or a .npy/.npz file")
    return files


def batches(files: list[Path], model: Any, size: int = BATCH) -> Iterator[tuple[list[Path], np.ndarray]]:
    """The files decoded for `model` (resized and scaled as its metadata says), `size` at a time; a batch holds
    pictures of one shape only (a model with free height and width keeps each picture's own size)."""
    from dlkit_runtime.datafiles import read_inputs

    names: list[Path] = []
    arrays: list[np.ndarray] = []
    for path in files:
        x = read_inputs(path, model)
        if arrays and (len(arrays) == size or x.shape != arrays[0].shape):
            yield names, np.concatenate(arrays)
            names, arrays = [], []
        names.append(path)
        arrays.append(x)
    if arrays:
        yield names, np.concatenate(arrays)


def run_folder(folder: Path, model: Any, predict: Callable[[np.ndarray], dict], top_k: int | None, softmax: bool,
               emit: Callable[[dict], None]) -> dict[str, np.ndarray]:
    """Runs every image of `folder` and emits one record per file: its path, and its top classes (`top_k`, default
    the best one when the first output is class scores; probabilities with `softmax`) or its outputs' values. Returns all outputs, in file order."""
    from dlkit_runtime.classes import ranked

    files = image_files(folder)
    first = model.outputs[0].name
    parts: dict[str, list[np.ndarray]] = {}
    for names, x in batches(files, model):
        outputs = predict(x)
        scores = outputs[first]
        classes = (ranked(scores, top_k or 1, model.labels, first, model.output_kind(first), softmax)
                   if scores.ndim == 2 else None)
        for row, path in enumerate(names):
            record: dict[str, Any] = {"path": str(path)}
            if classes is not None:
                record["top_k"] = [p.to_dict() for p in classes[row]]
            else:
                record["outputs"] = {k: np.asarray(v[row]).tolist() for k, v in outputs.items()}
            emit(record)
        for name, value in outputs.items():
            parts.setdefault(name, []).append(value)
    return {name: np.concatenate(values) for name, values in parts.items()}
