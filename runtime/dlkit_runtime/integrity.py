"""A model file's sha256, and the check that its bytes are those bundled (`IntegrityError` when not). Standard
library only. The one sha256 of dlkit: the runtime checks models with it and the toolkit's bundles are stamped
with it."""

from __future__ import annotations

import hashlib
import os

from dlkit_runtime.errors import IntegrityError


def sha256_bytes(data: bytes) -> str:
    """The hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's bytes, read in 1 MB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_sha256(data: bytes, expected: str, path: str | os.PathLike) -> None:
    """Raises `IntegrityError` when `data` (the bytes of `path`) does not hash to `expected`."""
    actual = sha256_bytes(data)
    if actual != expected.lower():
        raise IntegrityError(f"model '{path}' has sha256 {actual[:16]}..., the manifest expects {expected[:16]}...: "
                             "the file was modified or damaged; copy the bundle again (or re-run dlkit bundle)")
