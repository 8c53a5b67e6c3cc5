"""Data for calibration, evaluation and verification, streamed in batches.

A `DataSource` reads `.npy` (one input), `.npz` (arrays keyed by input name, labels under `y`) or a folder of
images (class sub-folders give labels). Arrays are memory-mapped where the format allows (`.npy`, and the
members of an uncompressed `.npz`), so a large file does not need its size in memory; images are decoded one
batch at a time. Every source is checked against the model's inputs before any work is done.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from dlkit.errors import InvalidInputError
from dlkit.core.parity import fit_array
from dlkit.core.tensors import TensorInfo
from dlkit_runtime.images import SUFFIXES as IMAGE_SUFFIXES  # what an image folder may hold

LABEL_KEYS = ("y", "labels", "label")


@dataclass
class DataSource:
    """Samples for a model, read lazily.

    Attributes:
        path: where they come from.
        inputs: the model inputs they feed.
        count: how many samples there are.
        labels: integer class labels, when the data has them.
        class_names: the names of the classes (image folders), else None.
        files: an image folder's files, in the order of the samples; else empty.
    """

    path: Path
    inputs: tuple[TensorInfo, ...]
    count: int
    labels: np.ndarray | None
    _read: Callable[[int, int], dict[str, np.ndarray]]
    class_names: tuple[str, ...] | None = None
    files: tuple[Path, ...] = ()

    def take(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Samples `start` to `stop` as a feed dict."""
        return self._read(start, min(stop, self.count))

    def batches(self, batch_size: int = 32, start: int = 0, stop: int | None = None) -> Iterator[dict[str, np.ndarray]]:
        """Feed dicts of at most `batch_size` samples, from `start` to `stop` (default: the end)."""
        stop = self.count if stop is None else min(stop, self.count)
        for first in range(start, stop, batch_size):
            yield self._read(first, min(first + batch_size, stop))


def open_data(path: str | os.PathLike, inputs: tuple[TensorInfo, ...], *, metadata: Mapping[str, Any] | None = None,
              what: str = "data") -> DataSource:
    """Opens `path` for a model with `inputs` and checks the first sample against them.

    Args:
        path: `.npy`, `.npz` or a folder of images.
        inputs: the model's inputs.
        metadata: the model's dlkit metadata (input layout, preprocessing hints) for images.
        what: what the data is for, in messages ("calibration data").

    A model that fixes its batch axis (model zoos' batch 1) still takes data of any number of samples: they are
    read as such, and whatever runs the model feeds them in batches of its size.

    Raises:
        InvalidInputError: a missing path, an unknown format, or data that does not fit an input.
    """
    path = Path(path)
    model_inputs = inputs
    inputs = tuple(TensorInfo(i.name, i.dtype, (None, *i.shape[1:])) if i.shape else i for i in inputs)
    if not path.exists():
        raise InvalidInputError(f"{what} '{path}' does not exist; give an .npy, an .npz or a folder of images")
    if path.is_dir():
        source = _image_folder(path, inputs, metadata or {}, what)
    elif path.suffix == ".npy":
        if len(inputs) != 1:
            raise InvalidInputError(f"{what} '{path}' is one array but the model takes {len(inputs)} inputs "
                                    f"{[i.name for i in inputs]}; give an .npz keyed by input name")
        array = _load_npy(path, what)
        _check_batched({inputs[0].name: array}, path, what)
        source = DataSource(path, inputs, len(array), None, _array_reader({inputs[0].name: array}, inputs, path))
    elif path.suffix == ".npz":
        source = _npz(path, inputs, what)
    else:
        raise InvalidInputError(f"{what} '{path}' is not .npy, .npz or a folder of images")
    if source.count == 0:
        raise InvalidInputError(f"{what} '{path}' holds no samples")
    source.take(0, 1)  # shape and dtype errors now, before any work
    source.inputs = model_inputs
    return source


def _load_npy(path: Path, what: str) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise InvalidInputError(f"{what} '{path}' could not be read ({err}); save it with numpy.save") from err


def _check_batched(arrays: Mapping[str, np.ndarray], path: Path, what: str) -> None:
    for name, array in arrays.items():
        if array.ndim == 0:
            raise InvalidInputError(f"{what} '{path}' holds one value for '{name}' (a 0-d array); give one row per "
                                    "sample, batch axis first")


def _array_reader(arrays: Mapping[str, np.ndarray], inputs, path) -> Callable[[int, int], dict[str, np.ndarray]]:
    def read(start: int, stop: int) -> dict[str, np.ndarray]:
        try:
            batch = {i.name: fit_array(np.asarray(arrays[i.name][start:stop]), i, source=str(path)) for i in inputs}
        except InvalidInputError:
            for info in inputs:  # say it with the file's whole shape: a zero-copy view raises before it would copy
                whole = arrays[info.name]
                fit_array(np.broadcast_to(np.zeros((), whole.dtype), whole.shape), info, source=str(path))
            raise
        for name, array in batch.items():
            finite = np.isfinite(array).reshape(len(array), -1).all(axis=1) if array.dtype.kind in "fc" else None
            if finite is not None and not finite.all():
                raise InvalidInputError(f"'{path}' has NaN or inf in input '{name}' (sample "
                                        f"{start + int(np.flatnonzero(~finite)[0])}); clean the data or drop those samples")
        return batch

    return read


def _npz(path: Path, inputs, what) -> DataSource:
    try:
        with zipfile.ZipFile(path) as archive:
            members = {Path(n).stem: n for n in archive.namelist() if n.endswith(".npy")}
            arrays = {key: _npz_member(path, archive, name) for key, name in members.items()}
    except (zipfile.BadZipFile, ValueError, OSError) as err:
        raise InvalidInputError(f"{what} '{path}' is not a readable .npz ({err}); save it with numpy.savez") from err
    labels_key = next((k for k in LABEL_KEYS if k in arrays), None)
    feeds = {k: v for k, v in arrays.items() if k != labels_key}
    if len(inputs) == 1 and inputs[0].name not in feeds and len(feeds) == 1:
        feeds = {inputs[0].name: next(iter(feeds.values()))}  # one array for one input: the name need not match
    missing = [i.name for i in inputs if i.name not in feeds]
    if missing:
        raise InvalidInputError(f"{what} '{path}' has no array for input(s) {missing} (it has {sorted(arrays)}); "
                                "key the .npz by input name, labels under 'y'")
    _check_batched({**feeds, **({labels_key: arrays[labels_key]} if labels_key else {})}, path, what)
    counts = {len(feeds[i.name]) for i in inputs}
    labels = _labels(np.asarray(arrays[labels_key]), path, labels_key, what) if labels_key else None
    if len(counts) != 1 or (labels is not None and len(labels) not in counts):
        raise InvalidInputError(f"{what} '{path}' has arrays of different lengths; give one row per sample in each")
    return DataSource(path, inputs, counts.pop(), labels, _array_reader(feeds, inputs, path))


def _labels(labels: np.ndarray, path: Path, key: str, what: str) -> np.ndarray:
    """Class indices from integer labels, a (N, 1) column, or one-hot / per-class score rows (their argmax)."""
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    elif labels.ndim == 2 and labels.dtype.kind in "biuf":
        labels = labels.argmax(axis=1)
    if labels.ndim != 1 or labels.dtype.kind not in "biuf":
        raise InvalidInputError(f"labels '{key}' in {what} '{path}' have shape {labels.shape} and dtype {labels.dtype};"
                                " give one integer class index per sample (or one-hot rows)")
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise InvalidInputError(f"labels '{key}' in {what} '{path}' are not whole numbers; give integer class "
                                    "indices")
        labels = labels.astype(np.int64)
    return labels


def _npz_member(path: Path, archive: zipfile.ZipFile, name: str) -> np.ndarray:
    """A memory map of an uncompressed member (what numpy.savez writes); a compressed one is read whole."""
    info = archive.getinfo(name)
    if info.compress_type != zipfile.ZIP_STORED:
        with archive.open(name) as f:
            return np.lib.format.read_array(f, allow_pickle=False)
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        name_len, extra_len = int.from_bytes(local[26:28], "little"), int.from_bytes(local[28:30], "little")
        f.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        if dtype.hasobject:
            raise ValueError(f"member {name} holds Python objects, which dlkit never unpickles")
        offset = f.tell()
    if not shape or 0 in shape:
        return np.zeros(shape, dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def _image_folder(path: Path, inputs, metadata, what) -> DataSource:
    from dlkit_runtime.images import decode, image_input

    if len(inputs) != 1:
        raise InvalidInputError(f"{what} '{path}' is a folder of images but the model takes {len(inputs)} inputs; "
                                "give an .npz keyed by input name")
    files = _interleaved(path, sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()))
    if not files:
        raise InvalidInputError(f"{what} folder '{path}' has no images ({', '.join(IMAGE_SUFFIXES)})")
    classes = sorted({p.parent.relative_to(path).parts[0] for p in files if p.parent != path})
    labels = None
    if classes and all(p.parent != path for p in files):
        index = _class_index(classes, metadata.get("labels"))
        labels = np.array([index[p.relative_to(path).parts[0]] for p in files], np.int64)
    info = inputs[0]

    def read(start: int, stop: int) -> dict[str, np.ndarray]:
        batch = [image_input(decode(f, info, metadata), info, metadata)[0] for f in files[start:stop]]
        return {info.name: np.stack(batch)}

    return DataSource(path, inputs, len(files), labels, read, tuple(classes) if labels is not None else None,
                      tuple(files))


def _interleaved(root: Path, files: list[Path]) -> list[Path]:
    """The files taking turns by sub-folder (class): the first of each, then the second of each, ... Calibration
    reads the first samples and holds back the last ones, so in sorted order a class-per-folder set calibrated on
    its first classes only and was checked on its last (1,000 of the photo set's 2,000: birds and flowers only)."""
    groups: dict[str, list[Path]] = {}
    for f in files:
        parts = f.relative_to(root).parts
        groups.setdefault(parts[0] if len(parts) > 1 else "", []).append(f)
    turns = [g for _, g in sorted(groups.items())]
    return [g[i] for i in range(max(map(len, turns), default=0)) for g in turns if i < len(g)]


def _class_index(classes: list[str], labels: Any) -> dict[str, int]:
    """Class folder -> label index: by the model's labels when they name every folder, by the folder's number
    when all are numbers (a missing class shifts nothing), else by sorted name."""
    if isinstance(labels, list) and all(name in labels for name in classes):
        return {name: labels.index(name) for name in classes}
    if all(name.isdigit() for name in classes):
        return {name: int(name) for name in classes}
    return {name: i for i, name in enumerate(classes)}
