"""Paths in and out: outputs are checked before work starts and written whole or not at all."""

from __future__ import annotations

from pathlib import Path

from dlkit.errors import InvalidInputError
from dlkit_runtime.datafiles import write_atomic

__all__ = ["build_folder", "output_path", "write_atomic"]


def output_path(output, *, default_from=None, suffix: str, force: bool) -> Path:
    """Resolves and checks an output file path before any heavy work.

    Args:
        output: the path the user gave, or None for the default.
        default_from: the input path whose name (with `suffix`) is the default.
        suffix: the default suffix, e.g. ".onnx".
        force: allow replacing an existing file.

    Raises:
        InvalidInputError: no output and no default, a missing folder, an existing file without force, a folder.
    """
    if output is None:
        if default_from is None:
            raise InvalidInputError("no output path given; pass one (-o model.onnx)")
        source = Path(default_from)
        output = source.with_suffix(suffix) if source.suffix else source.parent / (source.name + suffix)
    path = Path(output)
    if path.is_dir():
        raise InvalidInputError(f"output '{path}' is a folder; give a file path such as '{path / ('model' + suffix)}'")
    if not path.parent.is_dir():
        raise InvalidInputError(f"output folder '{path.parent}' does not exist; create it first")
    if path.exists() and not force:
        raise InvalidInputError(f"output '{path}' exists; pass --force (force=True) to replace it")
    return path


def build_folder(final: Path, fill) -> Path:
    """Fills a temporary sibling of `final` (`fill(folder)`), then swaps it into place: a failed or interrupted fill
    leaves `final` as it was and removes its own folder (a killed one leaves `.<name>.*`, hidden)."""
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        fill(tmp)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
