"""The one copier of `dlkit_runtime`: its sources, sub-packages included, as a bundle and the emulated device carry
them (no compiled files, no caches)."""

from __future__ import annotations

from pathlib import Path


def runtime_sources() -> dict[str, bytes]:
    """Every `.py` file of the installed `dlkit_runtime`, keyed by its path relative to the folder that holds the
    package ("dlkit_runtime/serving/server.py"), in a stable order."""
    import dlkit_runtime

    package = Path(dlkit_runtime.__file__).parent
    return {str(source.relative_to(package.parent).as_posix()): source.read_bytes()
            for source in sorted(package.rglob("*.py")) if "__pycache__" not in source.parts}


def copy_runtime(folder: Path) -> None:
    """Write `dlkit_runtime` under `folder` (folder/dlkit_runtime/...)."""
    for relative, data in runtime_sources().items():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
