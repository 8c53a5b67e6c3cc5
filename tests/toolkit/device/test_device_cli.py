"""The emulated device's command line without qemu: one line naming the package to install, exit 3, for every verb
that takes --device; an unknown device is refused before any work."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def _dlkit(*args, path: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": path, "DLKIT_DEVICE_CACHE": os.path.join(path, "cache")}
    return subprocess.run([sys.executable, "-m", "dlkit", *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("verb", ["setup", "verify", "run"])
def test_missing_qemu_is_one_line_naming_the_package(verb, onnx_exports, tmp_path):
    model = onnx_exports["cnn"]
    import numpy as np

    np.save(tmp_path / "x.npy", np.zeros((2, 28, 28, 1), np.float32))
    args = {"setup": ["device", "setup", "rpi4"],
            "verify": ["verify", model, model, "--random", "4", "--device", "rpi5"],
            "run": ["run", model, "-i", tmp_path / "x.npy", "--device", "rpi4"]}[verb]
    proc = _dlkit(*args, path=str(tmp_path))  # a PATH without qemu-aarch64-static
    assert proc.returncode == 3, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line and not line.startswith("verifying")]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "qemu-user-static" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    as_json = _dlkit(*args, "--json", path=str(tmp_path))
    assert as_json.returncode == 3 and json.loads(as_json.stdout)["error_type"] == "MissingDependencyError"


def test_unknown_device_is_refused(onnx_exports):
    import dlkit
    from dlkit.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="unknown device 'rpi3'; emulated devices are rpi4, rpi5, rpi-zero2, aarch64, rpi4-bookworm"):
        dlkit.verify(onnx_exports["cnn"], [onnx_exports["cnn"]], random=4, device="rpi3")
    proc = subprocess.run([sys.executable, "-m", "dlkit", "quantize", str(onnx_exports["cnn"]), "--device", "rpi3"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "rpi3" in proc.stderr and "Traceback" not in proc.stderr
