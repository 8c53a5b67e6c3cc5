"""A bundle on disk: written as a folder or a `.tar.gz` (into a temporary file or folder, then renamed), and an
archive unpacked safely (no member may land outside the destination)."""

from __future__ import annotations

import datetime
import io
import os
import tarfile
from pathlib import Path, PurePosixPath

from dlkit.core import files as files_io
from dlkit.errors import InvalidInputError

EXECUTABLE = {"install.sh", "predict.py", "bench.py", "serve.py"}


def write_folder(output: Path, files: dict[str, bytes]) -> int:
    """Writes into a temporary sibling folder, then swaps it into place: a failure leaves the old output."""
    files_io.build_folder(output, lambda tmp: _fill(tmp, files))
    return sum(len(d) for d in files.values())


def _fill(folder: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o755 if rel in EXECUTABLE else 0o644)


def write_archive(output: Path, stem: str, files: dict[str, bytes]) -> int:
    buffer = io.BytesIO()
    now = int(datetime.datetime.now().timestamp())
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for rel in sorted(files):
            info = tarfile.TarInfo(f"{stem}/{rel}")
            info.size, info.mtime = len(files[rel]), now
            info.mode = 0o755 if rel in EXECUTABLE else 0o644
            tar.addfile(info, io.BytesIO(files[rel]))

    files_io.write_atomic(output, buffer.getvalue())
    return output.stat().st_size



def unpack(archive: str | os.PathLike, destination: str | os.PathLike) -> Path:
    """Extracts a bundle archive into `destination`, refusing members that would land outside it.

    Every member is checked first (absolute paths, `..`, links pointing outside, devices), then extracted with
    tarfile's `data` filter, which enforces the same again.

    Args:
        archive: the `.tar.gz` file.
        destination: the folder to extract into (created when missing).

    Returns:
        The bundle folder inside `destination` (the archive's one top-level folder).

    Raises:
        InvalidInputError: not a tar archive, or a member escaping `destination`.
    """
    archive, destination = Path(archive), Path(destination)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, archive)
            destination.mkdir(parents=True, exist_ok=True)
            try:
                tar.extractall(destination, members=members, filter="data")
            except tarfile.FilterError as err:
                raise InvalidInputError(f"'{archive}' has an unsafe member ({err}); do not use this archive") from err
    except (tarfile.TarError, OSError) as err:
        raise InvalidInputError(f"cannot read bundle archive '{archive}' ({err}); give the .tar.gz dlkit bundle made") from err
    tops = {PurePosixPath(m.name).parts[0] for m in members if PurePosixPath(m.name).parts}
    return destination / tops.pop() if len(tops) == 1 else destination


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    path = PurePosixPath(member.name)
    unsafe = None
    if member.name.startswith(("/", "\\")) or (len(member.name) > 1 and member.name[1] == ":"):
        unsafe = "an absolute path"
    elif ".." in path.parts or "\\" in member.name:
        unsafe = "a '..' component" if ".." in path.parts else "a backslash"
    elif member.issym() or member.islnk():
        link = PurePosixPath(member.linkname)
        base = path.parent if member.issym() else PurePosixPath()
        depth = 0
        for part in (base / link).parts if not link.is_absolute() else ("..",):
            depth = depth - 1 if part == ".." else depth + (part != ".")
            if depth < 0:
                unsafe = f"a link to '{member.linkname}' outside the folder"
                break
    elif not (member.isfile() or member.isdir()):
        unsafe = "a device or other special file"
    if unsafe:
        raise InvalidInputError(f"'{archive}' member '{member.name}' is {unsafe}: it would escape the target folder; "
                                "refusing to unpack it")
