"""Input and output files of `dlkit run`: `.npy` (one input), `.npz` (keyed by input name), one image (PNG without
anything else; JPEG, BMP, GIF, WebP and TIFF with Pillow: see `dlkit_runtime.images`), or one `.wav` sound
(`dlkit_runtime.audio`)."""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from dlkit_runtime.errors import InvalidInputError


def read_inputs(path: str | os.PathLike, model: Any = None) -> np.ndarray | dict[str, np.ndarray]:
    """Reads model inputs from a file.

    Args:
        path: a `.npy` file (the array for a one-input model), a `.npz` file (arrays keyed by input name), or an
            image for a one-input image model, resized and scaled for it (see `dlkit_runtime.images`); for a text
            model, a `.txt` file (one sentence per line) or a string that is not a path, vectorized.
            A `.wav` for a one-input audio model, padded or cut to its length (see `dlkit_runtime.audio`).
        model: the `Model` the inputs are for; needed for an image or text. Defaults to None.

    Returns:
        An array, or a dict of arrays keyed by name.

    Raises:
        InvalidInputError: a missing file, another format, or a file numpy or Pillow cannot read.
        MissingDependencyError: an image other than PNG without Pillow installed.
    """
    from dlkit_runtime.audio import SUFFIXES as SOUNDS
    from dlkit_runtime.images import SUFFIXES
    from dlkit_runtime.text import text_input

    text = text_input(path, model)  # a text model: the text itself, or a .txt file with one sentence per line
    if text is not None:
        return text
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise InvalidInputError(f"input file '{path}' does not exist; give a .npy, .npz or image file")
    if suffix in SUFFIXES:
        return _read_image(path, model)
    if suffix in SOUNDS:
        return _read_sound(path, model)
    if suffix not in (".npy", ".npz"):
        raise InvalidInputError(f"input file '{path}' is not .npy, .npz or an image ({', '.join(SUFFIXES)}), nor a "
                                ".wav; save your arrays with np.save or np.savez")
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise InvalidInputError(f"numpy cannot read '{path}' ({err}); write it with np.save or np.savez") from err
    if not arrays:
        raise InvalidInputError(f"'{path}' holds no arrays; write the inputs with np.savez(path, name=array)")
    return arrays


def _read_image(path: Path, model: Any) -> np.ndarray:
    from dlkit_runtime.images import decode, image_input

    if model is None or len(model.inputs) != 1:
        raise InvalidInputError(f"an image ('{path}') can feed only a model with one input; give a .npz keyed by input "
                                "name")
    return image_input(decode(path, model.inputs[0], model.metadata), model.inputs[0], model.metadata)


def _read_sound(path: Path, model: Any) -> np.ndarray:
    from dlkit_runtime.audio import audio_input

    if model is None or len(model.inputs) != 1:
        raise InvalidInputError(f"a sound ('{path}') can feed only a model with one input; give a .npz keyed by input "
                                "name")
    return audio_input(path, model.inputs[0], model.metadata)


def write_outputs(path: str | os.PathLike, outputs: Mapping[str, np.ndarray], *, force: bool = False) -> Path:
    """Saves outputs keyed by name to a `.npz` file, whole or not at all (the suffix is added when missing, as
    `np.savez` does).

    Args:
        path: the file to write.
        outputs: arrays keyed by output name.
        force: replace an existing file. Defaults to False.

    Returns:
        The path written.

    Raises:
        InvalidInputError: the folder does not exist or cannot be written, or the file exists and force is off.
    """
    path = Path(path)
    if not path.name.endswith(".npz"):
        path = path.with_name(path.name + ".npz")
    if not path.parent.is_dir():
        raise InvalidInputError(f"output folder '{path.parent}' does not exist; create it first")
    if path.exists() and not force:
        raise InvalidInputError(f"output '{path}' exists; pass --force (force=True) to replace it")
    buffer = io.BytesIO()
    np.savez(buffer, **outputs)
    write_atomic(path, buffer.getvalue())
    return path


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` to a temporary file beside `path`, then renames it into place: a reader sees the old file or
    the new one, never half of one. The file gets the permissions a plain `open(path, "wb")` would give it.

    Raises:
        InvalidInputError: the folder cannot be written (permissions, a read-only or full disk).
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise InvalidInputError(f"cannot write to '{path.parent}' ({err.strerror}); choose a folder you can write to") from err
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode(path))
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise InvalidInputError(f"cannot write '{path}' ({err.strerror}); choose a path you can write to") from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _file_mode(path: Path) -> int:
    """The replaced file's permissions, else 0o666 less the process umask (mkstemp's own are 0o600)."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        pass
    try:
        with open("/proc/self/status") as status:  # Linux: read the umask without changing it
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask
