"""A bundle's `manifest.json`: what `dlkit bundle` wrote, read back on the device, and the model's sha256 checked.

A bundle is a folder with the model(s), `manifest.json`, this package and a `predict.py`. The manifest names each
model file with its sha256; `open_model` refuses a file whose bytes differ, before onnxruntime sees them.

    >>> from dlkit_runtime.manifest import open_model
    >>> model = open_model("bundle/")          # the manifest's default model, checked
    >>> model.predict(x)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlkit_runtime.errors import IntegrityError, InvalidInputError

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class BundledModel:
    """One model file of a bundle.

    Attributes:
        file: its name inside the bundle folder.
        sha256: the hex sha256 of its bytes when bundled.
        size_bytes: its size when bundled.
        precision: "float32", "float16" or "int8".
    """

    file: str
    sha256: str
    size_bytes: int
    precision: str

    def to_dict(self) -> dict:
        return {"file": self.file, "sha256": self.sha256, "size_bytes": self.size_bytes, "precision": self.precision}


@dataclass(frozen=True)
class Manifest:
    """A bundle's manifest.

    Attributes:
        folder: the bundle folder it was read from.
        models: the bundled models, the default one first.
        target: the device it was made for ("rpi4", "rpi5", "aarch64", "x86_64").
        threads: the intra-op threads to use there.
        raw: the whole manifest as a dict (inputs, outputs, labels, dlkit version, creation time, advice).
    """

    folder: Path
    models: tuple[BundledModel, ...]
    target: str
    threads: int
    raw: dict

    @property
    def default(self) -> BundledModel:
        return self.models[0]

    @property
    def labels(self) -> list[str] | None:
        return self.raw.get("labels")

    def model(self, file: str | None = None) -> BundledModel:
        """The entry for `file` (a model's file name), or the default model.

        Raises:
            InvalidInputError: `file` is not one of the bundle's models.
        """
        if file is None:
            return self.default
        name = Path(file).name
        for entry in self.models:
            if entry.file == name:
                return entry
        raise InvalidInputError(f"'{file}' is not a model of the bundle in '{self.folder}'; its models are "
                                f"{', '.join(m.file for m in self.models)}")

    def to_dict(self) -> dict:
        return dict(self.raw)


def read_manifest(folder: str | os.PathLike) -> Manifest:
    """Reads `manifest.json` from a bundle folder.

    Args:
        folder: the bundle folder (or its `manifest.json`).

    Returns:
        A `Manifest`.

    Raises:
        InvalidInputError: no manifest, not JSON, or fields missing.
    """
    path = Path(folder)
    if path.name != MANIFEST_NAME:
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise InvalidInputError(f"no {MANIFEST_NAME} in '{path.parent}'; give the folder `dlkit bundle` made")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        models = tuple(BundledModel(str(m["file"]), str(m["sha256"]).lower(), int(m["size_bytes"]),
                                    str(m.get("precision", "float32"))) for m in raw["models"])
        if not models:
            raise ValueError("no models")
        manifest = Manifest(path.parent, models, str(raw.get("target", "")), int(raw.get("threads") or 0), raw)
    except (ValueError, KeyError, TypeError) as err:
        raise InvalidInputError(f"'{path}' is not a valid dlkit bundle manifest ({err!r}); bundle the model again") from err
    for entry in models:
        if Path(entry.file).name != entry.file:  # a manifest must not point outside its folder
            raise InvalidInputError(f"'{path}' names model file '{entry.file}' outside the bundle; bundle the model again")
    return manifest


def open_model(folder: str | os.PathLike, file: str | None = None, **kwargs: Any):
    """Loads a bundle's model after checking its sha256 against the manifest.

    Args:
        folder: the bundle folder.
        file: which of the bundle's model files. Defaults to None: the manifest's default model.
        **kwargs: passed to `Model`; `threads` defaults to the manifest's.

    Returns:
        A `dlkit_runtime.Model`.

    Raises:
        IntegrityError: the model's bytes differ from those bundled.
        InvalidInputError: no or a bad manifest, an unknown file, a model onnxruntime cannot load.
    """
    from dlkit_runtime.model import Model

    manifest = read_manifest(folder)
    entry = manifest.model(file)
    if manifest.threads and kwargs.get("threads") is None:
        kwargs["threads"] = manifest.threads
    return Model(manifest.folder / entry.file, sha256=entry.sha256, **kwargs)


__all__ = ["BundledModel", "IntegrityError", "Manifest", "open_model", "read_manifest"]
