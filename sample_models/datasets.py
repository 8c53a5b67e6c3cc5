"""Pure numpy + stdlib loaders for the sample data (MNIST, Tiny Shakespeare).

No TensorFlow/Keras import. Full originals are used when found in
``<repo>/../shared/data`` (or an explicit ``root``); otherwise the small
copies shipped in ``sample_models/data`` are used (see data/SOURCE.md).
"""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

__all__ = [
    "DATA_DIR", "SHARED_DIR", "VOCAB", "CharVocab", "as_cnn_input", "as_mlp_input",
    "encode", "decode", "load_mnist", "load_text", "mnist_for", "mnist_source", "parity_labels",
    "read_idx", "text_source",
]

DATA_DIR = Path(__file__).resolve().parent / "data"
SHARED_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"

_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_SHIPPED_MNIST = {
    "train": ("train-subset-images-idx3-ubyte.gz", "train-subset-labels-idx1-ubyte.gz"),
    "test": _MNIST_FILES["test"],
}

#: Sorted distinct characters of the FULL Tiny Shakespeare text (65 chars).
VOCAB = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
assert len(VOCAB) == 65 and "".join(sorted(set(VOCAB))) == VOCAB


# --------------------------------------------------------------------- MNIST
def read_idx(path: str | Path, ndim: int | None = None) -> np.ndarray:
    """Read a (optionally gzip-compressed) unsigned-byte IDX file.

    Raises ValueError if the magic number, dimension count or data length
    does not match.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:  # bad gzip stream
        raise ValueError(f"{path}: cannot read IDX file ({e})") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: bad IDX magic {raw[:4]!r} (expected 00 00 08 <ndim>)")
    if raw[2] != 0x08:
        raise ValueError(f"{path}: IDX data type 0x{raw[2]:02x} is not unsigned byte (0x08)")
    nd = raw[3]
    if ndim is not None and nd != ndim:
        raise ValueError(f"{path}: IDX has {nd} dimensions, expected {ndim}")
    header = 4 + 4 * nd
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{nd}I", raw[4:header])
    expected = int(np.prod(dims, dtype=np.int64))
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: IDX dims {dims} need {expected} data bytes, found {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def mnist_source(split: str = "test", root: str | Path | None = None,
                 shipped_only: bool = False) -> tuple[Path, Path, str]:
    """Return ``(images_path, labels_path, kind)``; kind is "full" or "subset".

    Order: ``root`` (if given; must hold the originals), then
    ``../shared/data/mnist`` when present, then the shipped files.
    """
    if split not in _MNIST_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if root is not None:
        root = Path(root)
        paths = [root / n for n in _MNIST_FILES[split]]
        if not all(p.is_file() for p in paths):
            raise FileNotFoundError(f"MNIST {split} files not found in {root}")
        return paths[0], paths[1], "full"
    if not shipped_only:
        paths = [SHARED_DIR / "mnist" / n for n in _MNIST_FILES[split]]
        if all(p.is_file() for p in paths):
            return paths[0], paths[1], "full"
    paths = [DATA_DIR / "mnist" / n for n in _SHIPPED_MNIST[split]]
    return paths[0], paths[1], "full" if split == "test" else "subset"


def load_mnist(split: str = "test", root: str | Path | None = None, *,
               shipped_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Load MNIST ``split`` ("train" or "test").

    Returns uint8 images (N, 28, 28) and uint8 labels (N,). With
    ``shipped_only=True`` the repo copies are used (train = first 10,000).
    """
    img_path, lbl_path, _ = mnist_source(split, root, shipped_only)
    images = read_idx(img_path, ndim=3)
    labels = read_idx(lbl_path, ndim=1)
    if images.shape[1:] != (28, 28):
        raise ValueError(f"{img_path}: expected 28x28 images, got {images.shape[1:]}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{img_path}: {images.shape[0]} images but {labels.shape[0]} labels")
    if labels.size and labels.max() > 9:
        raise ValueError(f"{lbl_path}: label {labels.max()} out of range 0-9")
    return images, labels


def as_mlp_input(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 784) in [0, 1]."""
    images = np.asarray(images)
    return (images.reshape(images.shape[0], -1).astype(np.float32) / 255.0)


def as_cnn_input(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 28, 28, 1) in [0, 1]."""
    images = np.asarray(images)
    return (images.reshape(images.shape[0], 28, 28, 1).astype(np.float32) / 255.0)


def mnist_for(kind: str, images: np.ndarray) -> np.ndarray:
    """Preprocess images for a model ``kind``: "mlp" or "cnn"."""
    if kind == "mlp":
        return as_mlp_input(images)
    if kind == "cnn":
        return as_cnn_input(images)
    raise ValueError(f"kind must be 'mlp' or 'cnn', got {kind!r}")


def parity_labels(labels: np.ndarray) -> np.ndarray:
    """Digit labels -> parity labels (0 = even, 1 = odd)."""
    return (np.asarray(labels) % 2).astype(np.uint8)


# ---------------------------------------------------------- Tiny Shakespeare
def text_source(root: str | Path | None = None, shipped_only: bool = False) -> tuple[Path, str]:
    """Return ``(path, kind)`` of the Tiny Shakespeare text; kind "full"/"subset"."""
    if root is not None:
        path = Path(root) / "input.txt" if Path(root).is_dir() else Path(root)
        if not path.is_file():
            raise FileNotFoundError(f"Tiny Shakespeare input.txt not found at {path}")
        return path, "full"
    if not shipped_only:
        path = SHARED_DIR / "tinyshakespeare" / "input.txt"
        if path.is_file():
            return path, "full"
    return DATA_DIR / "tinyshakespeare" / "input.txt", "subset"


def load_text(root: str | Path | None = None, shipped_only: bool = False) -> str:
    """Tiny Shakespeare text: the full file when found, else the shipped slice."""
    path, _ = text_source(root, shipped_only)
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


class CharVocab:
    """Fixed char <-> id mapping over the 65-char Tiny Shakespeare vocabulary."""

    def __init__(self, chars: str = VOCAB):
        self.chars = chars
        self._lut = np.full(max(map(ord, chars)) + 1, -1, dtype=np.int32)
        self._lut[[ord(c) for c in chars]] = np.arange(len(chars), dtype=np.int32)
        self.char_to_id = {c: i for i, c in enumerate(chars)}

    def __len__(self) -> int:
        return len(self.chars)

    @property
    def size(self) -> int:
        """Number of symbols (65)."""
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """str -> int32 ids; raises ValueError on a character outside the vocab."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        if codes.size and codes.max() >= self._lut.size:
            bad = next(c for c in text if ord(c) >= self._lut.size)
            raise ValueError(f"character {bad!r} is not in the vocabulary")
        ids = self._lut[codes]
        if (ids < 0).any():
            bad = text[int(np.argmax(ids < 0))]
            raise ValueError(f"character {bad!r} is not in the vocabulary")
        return ids.astype(np.int32)

    def decode(self, ids) -> str:
        """int ids -> str."""
        return "".join(self.chars[int(i)] for i in np.asarray(ids).ravel())


_DEFAULT_VOCAB = CharVocab()


def encode(text: str) -> np.ndarray:
    """Encode text with the fixed vocabulary."""
    return _DEFAULT_VOCAB.encode(text)


def decode(ids) -> str:
    """Decode ids with the fixed vocabulary."""
    return _DEFAULT_VOCAB.decode(ids)
