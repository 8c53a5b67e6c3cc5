"""Input and output files of `dlkit run`: `.npy` (one input), `.npz` (keyed by input name), `.png` (one image)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from dlkit_runtime.errors import InvalidInputError

_IMAGES = {".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


def read_inputs(path: str | os.PathLike, model: Any = None) -> np.ndarray | dict[str, np.ndarray]:
    """Reads model inputs from a file.

    Args:
        path: a `.npy` file (the array for a one-input model), a `.npz` file (arrays keyed by input name), or an
            8-bit `.png` for a one-input image model (see `dlkit_runtime.images`).
        model: the `Model` the inputs are for; needed for a `.png`. Defaults to None.

    Returns:
        An array, or a dict of arrays keyed by name.

    Raises:
        InvalidInputError: a missing file, an image, another format, or a file numpy cannot read.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in _IMAGES:
        raise InvalidInputError(
            f"'{path}' is an image dlkit_runtime does not decode (it reads 8-bit PNG only); convert it to "
            f".npy with the model's preprocessing, e.g. np.save('x.npy', np.asarray(PIL.Image.open('{path.name}'), "
            "'float32')[None] / 255)")
    if not path.is_file():
        raise InvalidInputError(f"input file '{path}' does not exist; give a .npy, .npz or .png file")
    if suffix == ".png":
        return _read_image(path, model)
    if suffix not in (".npy", ".npz"):
        raise InvalidInputError(f"input file '{path}' is not .npy, .npz or .png; save your arrays with np.save or "
                                "np.savez")
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        raise InvalidInputError(f"numpy cannot read '{path}' ({err}); write it with np.save or np.savez") from err
    if not arrays:
        raise InvalidInputError(f"'{path}' holds no arrays; write the inputs with np.savez(path, name=array)")
    return arrays


def _read_image(path: Path, model: Any) -> np.ndarray:
    from dlkit_runtime.images import image_input, read_png

    if model is None or len(model.inputs) != 1:
        raise InvalidInputError(f"an image ('{path}') can feed only a model with one input; give a .npz keyed by input "
                                "name")
    return image_input(read_png(path), model.inputs[0], model.metadata)


def write_outputs(path: str | os.PathLike, outputs: Mapping[str, np.ndarray]) -> None:
    """Saves outputs keyed by name to a `.npz` file (the suffix is added when missing, as `np.savez` does).

    Raises:
        InvalidInputError: the folder does not exist.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise InvalidInputError(f"output folder '{path.parent}' does not exist; create it first")
    np.savez(path, **outputs)
