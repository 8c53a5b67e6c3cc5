"""A device's own kernels on this machine: one emulated process (qemu user-mode, the device's CPU model) running the
bundled `dlkit_runtime` and the wheels a bundle for that device installs, answering over a pipe
(`dlkit_runtime.pipe`).

Emulation computes exactly what the device computes (integer and IEEE float arithmetic are emulated bit for bit,
and onnxruntime picks the kernels for the emulated CPU's features), about a hundred times slower: its timings mean
nothing and are never reported.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from dlkit.core.catalogue import EMULATED, IMAGE_REQUIREMENTS, REQUIREMENTS, SERVE_REQUIREMENTS, Device
from dlkit.errors import DeviceError, InvalidInputError
from dlkit_runtime import errors as runtime_errors
from dlkit_runtime import pipe
from dlkit_runtime.tensors import TensorInfo


DEVICES = EMULATED  # the devices emulated here, from the one catalogue


def lookup(name: str) -> Device:
    """The `Device` named `name`.

    Raises:
        InvalidInputError: no such device.
    """
    if name not in DEVICES:
        raise InvalidInputError(f"unknown device {name!r}; emulated devices are {', '.join(DEVICES)} (a name "
                                f"alone runs its default OS; <name>-<os> another)")
    return DEVICES[name]


def requirements() -> tuple[str, ...]:
    """The wheels every emulated device has: what a bundle installs (with images and `--serve`), pinned."""
    return (*REQUIREMENTS, *IMAGE_REQUIREMENTS, *SERVE_REQUIREMENTS)


class RemoteModel:
    """A model loaded in the emulated process: `dlkit_runtime.Model`'s `inputs`, `outputs`, `metadata`, `labels`,
    `providers` and `predict`, computed on the device."""

    def __init__(self, emulator: "Emulator", path: Path, reply: Mapping[str, Any]):
        self._emulator, self.path, self._id = emulator, path, reply["id"]
        self.inputs = tuple(TensorInfo(i["name"], i["dtype"], tuple(i["shape"])) for i in reply["inputs"])
        self.outputs = tuple(TensorInfo(o["name"], o["dtype"], tuple(o["shape"])) for o in reply["outputs"])
        self.metadata = dict(reply["metadata"])
        self.providers = tuple(reply["providers"])

    @property
    def labels(self) -> tuple[str, ...] | None:
        labels = self.metadata.get("labels")
        return tuple(labels) if isinstance(labels, list) else None

    def predict(self, x: Any, *, cast: bool = False) -> dict[str, np.ndarray]:
        if not isinstance(x, Mapping):
            if len(self.inputs) != 1:
                raise InvalidInputError(f"the model takes {len(self.inputs)} inputs; pass a dict keyed by input name")
            x = {self.inputs[0].name: x}
        _, out = self._emulator.request({"op": "predict", "id": self._id, "cast": cast},
                                        {k: np.asarray(v) for k, v in x.items()})
        return out

    def __call__(self, x: Any) -> dict[str, np.ndarray]:
        return self.predict(x)


class Emulator:
    """One emulated process for `device` (a name of `DEVICES`); a context manager. `load` a model file, then
    `predict` through the returned `RemoteModel`.

    Args:
        device: a name of `DEVICES`: "rpi4", "rpi5", "rpi-zero2" or "aarch64" run Raspberry Pi OS trixie's
            Python 3.13; "rpi5-bookworm" and the like bookworm's Python 3.11.
        threads: intra-op threads of the models (the emulated cores are this machine's). Defaults to None: all
            of this machine's cores.
        log: called with a line on each setup step (downloads the first time).

    Raises:
        MissingDependencyError, DeviceSetupError: as `dlkit.device.setup`.
    """

    def __init__(self, device: str, *, threads: int | None = None, log: Callable[[str], None] | None = None):
        from dlkit.device import environment

        self.device = lookup(device)
        self._threads = threads or os.cpu_count() or 1
        env = environment.build(requirements(), system=self.device.os, log=log or (lambda line: None))
        self._runtime = Path(tempfile.mkdtemp(prefix="dlkit-device-"))
        _copy_runtime(self._runtime)
        cmd, variables = env.command(["-m", "dlkit_runtime.pipe"], self.device.cpu, path=[self._runtime])
        self._stderr = tempfile.TemporaryFile()
        self._process = subprocess.Popen(cmd, env=variables, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self._stderr)
        self._models: dict[Path, RemoteModel] = {}
        try:
            self.info = self.request({"op": "hello"})[0]
        except BaseException:
            self.close()
            raise

    def computed_on(self) -> dict:
        """Where figures computed by this process come from, for results and reports."""
        system = self.device.system
        return {"where": "device", "device": self.device.name, "emulated": True, "cpu_model": self.device.cpu,
                "description": self.device.cpu_description, "cpu": self.info["cpu"],
                "onnxruntime": {"version": self.info["onnxruntime"], "providers": self.info["providers"]},
                "python": self.info["python"], "os": system.description, "os_name": system.name}

    def load(self, path: str | os.PathLike) -> RemoteModel:
        """The model at `path`, loaded once in the emulated process (a second call returns the same model)."""
        path = Path(path).resolve()
        if path not in self._models:
            reply, _ = self.request({"op": "load", "path": str(path), "threads": self._threads})
            self._models[path] = RemoteModel(self, path, reply)
        return self._models[path]

    def unload(self, model: RemoteModel) -> None:
        self._models.pop(model.path, None)
        self.request({"op": "unload", "id": model._id})

    def request(self, header: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | None = None
                ) -> tuple[dict, dict[str, np.ndarray]]:
        """Sends one request and returns the reply.

        Raises:
            the runtime's error class named in the reply (InvalidInputError, ...), else DeviceError: the request
            failed on the device, or the emulated process ended.
        """
        try:
            pipe.write(self._process.stdin, header, arrays)
            message = pipe.read(self._process.stdout)
        except (BrokenPipeError, ValueError, OSError):
            message = None
        if message is None:
            code = self._process.wait(timeout=30)
            raise DeviceError(f"the emulated {self.device.name} process ended (exit {code}): {self._stderr_tail()}")
        reply, out = message
        if "error" in reply:
            kind = getattr(runtime_errors, reply.get("type", ""), None)
            kind = kind if isinstance(kind, type) and issubclass(kind, runtime_errors.DlkitError) else DeviceError
            raise kind(f"on the emulated {self.device.name}: {reply['error']}")
        return reply, out

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        lines = self._stderr.read().decode(errors="replace").strip().splitlines()
        return " | ".join(lines[-3:])[-500:] or "nothing on stderr"

    def close(self) -> None:
        process = getattr(self, "_process", None)
        if process is not None and process.poll() is None:
            try:
                process.stdin.close()
                process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                process.kill()
                process.wait()
        if process is not None:
            process.stdout.close()
        if getattr(self, "_stderr", None) is not None:
            self._stderr.close()
        shutil.rmtree(getattr(self, "_runtime", ""), ignore_errors=True)

    def __enter__(self) -> "Emulator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _copy_runtime(folder: Path) -> None:
    """The host's `dlkit_runtime` sources, as a bundle carries them."""
    from dlkit.core.runtime_sources import copy_runtime

    copy_runtime(folder)
