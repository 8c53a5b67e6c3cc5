"""Emulated devices: a Raspberry Pi's own kernels on this machine (qemu user-mode running an aarch64 Python with the
wheels a bundle installs). `setup` builds or checks one; `Emulator` runs models on it for `verify`, `run`, `quantize`
and `bundle --check-on-device`; `count_instructions` counts the guest instructions one inference executes on its CPU
(a qemu plugin: work, not time)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from dlkit.device.emulated import DEVICES, Device, Emulator, RemoteModel, lookup, requirements
from dlkit.device.work import WorkCount, Workload, count_instructions, count_many

__all__ = ["DEVICES", "Device", "DeviceSetupResult", "Emulator", "RemoteModel", "WorkCount", "Workload",
           "count_instructions", "count_many", "lookup", "requirements", "setup"]


@dataclass(frozen=True)
class DeviceSetupResult:
    """What `setup` found or built.

    Attributes:
        device: the device (name, qemu CPU model, description). cache: the cache folder. requirements: the pinned
        wheels installed. reused: everything was there already (nothing downloaded). seconds: wall time.
        size_bytes: the cache's size on disk. computed_on: what the emulated process reports of itself (CPU kind,
        onnxruntime version and providers, Python).
    """

    device: Mapping[str, Any]
    cache: str
    requirements: tuple[str, ...]
    reused: bool
    seconds: float
    size_bytes: int
    computed_on: Mapping[str, Any]

    def to_dict(self) -> dict:
        return {"device": dict(self.device), "cache": self.cache, "requirements": list(self.requirements),
                "reused": self.reused, "seconds": self.seconds, "size_bytes": self.size_bytes,
                "computed_on": dict(self.computed_on)}


def setup(name: str, *, log: Callable[[str], None] | None = None) -> DeviceSetupResult:
    """Builds (the first time) or checks the emulated `name` (`DEVICES`: "rpi4", "rpi5", "rpi-zero2", "aarch64",
    or "rpi5-bookworm" and the like), then starts it once.

    The first time it downloads its OS's arm64 python (Debian trixie's python3.13 as Raspberry Pi OS trixie has
    it, or bookworm's python3.11) and its libraries (about 30 MB, from
    deb.debian.org) and the aarch64 wheels a bundle installs (numpy, onnxruntime, Pillow, and the server's
    uvicorn, starlette, httptools, uvloop, orjson: about 50 MB, from PyPI), into `~/.cache/dlkit/device` (`$DLKIT_DEVICE_CACHE`). It needs qemu-user-static and, on a
    non-Debian host, Debian's archive keyring; no root rights and no change to the system.

    Raises:
        InvalidInputError: an unknown device.
        MissingDependencyError: qemu-user-static, apt, dpkg-deb or the Debian archive keyring is missing.
        DeviceSetupError: a download or an install step failed (the message names it).
    """
    from dlkit.device import environment

    started = time.perf_counter()
    spec = lookup(name)
    environment.require_qemu()
    reused = environment.built(requirements(), system=spec.os)
    with Emulator(name, log=log) as emulator:
        computed_on = emulator.computed_on()
    cache = environment.cache_dir()
    size = sum(f.lstat().st_size for f in cache.rglob("*") if f.is_file() and not f.is_symlink())
    return DeviceSetupResult(spec.to_dict(), str(cache), requirements(), reused,
                             round(time.perf_counter() - started, 3), size, computed_on)
