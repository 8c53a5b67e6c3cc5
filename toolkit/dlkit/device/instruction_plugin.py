"""The instruction-counting TCG plugin (`files/count_instructions.c`): built with gcc at first use into the device
cache, keyed by the source's hash, and the markers a guest emits around the span it wants counted.

The plugin counts every guest instruction the emulated process executes (an inline add per translated block) and
writes the count between a start and a stop marker to a file. A marker is `os.lseek(-1, OFFSET)`: a syscall on no
file, which fails with EBADF and changes nothing, with an offset no program asks for.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from dlkit.core import files as _files
from dlkit.errors import DeviceSetupError, MissingDependencyError

SOURCE = Path(__file__).resolve().parent / "files" / "count_instructions.c"
LIBRARY = "count_instructions.so"
START, STOP = 0x646C6B6974000001, 0x646C6B6974000002  # "dlkit" then 1 or 2: the lseek offsets of the two markers
CFLAGS = ("-shared", "-fPIC", "-O2", "-fvisibility=hidden", "-Wall")


def library(cache: str | os.PathLike | None = None) -> Path:
    """The compiled plugin, built the first time into `cache` (default: the device cache) as
    `plugin-<source hash>/count_instructions.so`.

    Raises:
        MissingDependencyError: gcc is not installed.
        DeviceSetupError: gcc failed on the source.
    """
    from dlkit.device import environment

    source = SOURCE.read_bytes()
    cache = Path(cache) if cache else environment.cache_dir()
    final = cache / f"plugin-{hashlib.sha256(b' '.join([source, *map(str.encode, CFLAGS)])).hexdigest()[:16]}"
    if (final / LIBRARY).is_file():
        return final / LIBRARY
    gcc = shutil.which("gcc")
    if gcc is None:
        raise MissingDependencyError("counting instructions compiles a qemu plugin with gcc, which is not "
                                     "installed; install it with: sudo apt-get install qemu-user gcc")
    cache.mkdir(parents=True, exist_ok=True)
    with environment.locked(cache):  # the lock also keeps a concurrent build from removing our temporary folder
        if not (final / LIBRARY).is_file():
            _files.build_folder(final, lambda folder: compile_plugin(gcc, folder / LIBRARY))
    return final / LIBRARY


def compile_plugin(gcc: str, output: Path) -> Path:
    """Compiles `SOURCE` into the shared library `output` with `gcc`.

    Raises:
        DeviceSetupError: gcc failed (its last lines are in the message).
    """
    proc = subprocess.run([gcc, *CFLAGS, "-o", str(output), str(SOURCE)], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = " ".join(proc.stderr.strip().splitlines()[-3:])[-400:]
        raise DeviceSetupError(f"gcc could not compile {SOURCE.name} (exit {proc.returncode}): {tail}; check that "
                               "gcc can build shared libraries (sudo apt-get install gcc libc6-dev)")
    output.parent.chmod(0o755)  # mkdtemp makes it private; qemu run by another user reads it
    return output


def arguments(out: str | os.PathLike) -> dict[str, str]:
    """The plugin's arguments: the counts' file and the two markers' offsets."""
    return {"out": str(out), "start": hex(START), "stop": hex(STOP)}
