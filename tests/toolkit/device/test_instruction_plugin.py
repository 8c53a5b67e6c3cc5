"""The instruction-counting qemu plugin's C source, compiled on this host (no emulation): it builds with gcc and
exports what qemu's plugin loader looks up; `count_instructions` rejects bad arguments before starting qemu."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess

import numpy as np
import pytest

from dlkit.device import Workload, count_instructions, count_many, instruction_plugin
from dlkit.errors import InvalidInputError


@pytest.fixture(scope="module")
def gcc():
    found = shutil.which("gcc")
    if found is None or shutil.which("nm") is None:
        pytest.skip("gcc and nm (binutils) compile and read the plugin: sudo apt-get install gcc")
    return found


def test_the_plugin_compiles_and_exports_what_qemu_loads(gcc, tmp_path):
    library = instruction_plugin.compile_plugin(gcc, tmp_path / "count_instructions.so")
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(library)], capture_output=True, text=True,
                             check=True).stdout
    exported = {line.split()[-1]: line.split()[-2] for line in symbols.splitlines() if line.strip()}
    # qemu dlsym()s these two; everything else stays hidden (-fvisibility=hidden)
    assert exported == {"qemu_plugin_install": "T", "qemu_plugin_version": "D"}, exported
    undefined = subprocess.run(["nm", "-D", "--undefined-only", str(library)], capture_output=True, text=True,
                               check=True).stdout
    # the qemu API it calls is resolved from qemu-aarch64 at load time
    assert "qemu_plugin_register_vcpu_tb_exec_inline" in undefined
    assert "qemu_plugin_register_vcpu_syscall_cb" in undefined


def test_the_plugin_says_qemu_7_2s_api_version(gcc, tmp_path):
    """qemu 7.2 loads plugins of API versions 0 to 1 (its QEMU_PLUGIN_VERSION is 1). Loaded lazily, as qemu's
    calls stay unresolved until called (never, here)."""
    library = ctypes.CDLL(str(instruction_plugin.compile_plugin(gcc, tmp_path / "count.so")), mode=os.RTLD_LAZY)
    assert ctypes.c_int.in_dll(library, "qemu_plugin_version").value == 1
    assert callable(library.qemu_plugin_install)


def test_the_library_is_built_once_per_source(gcc, tmp_path):
    first = instruction_plugin.library(tmp_path)
    built = first.stat().st_mtime_ns
    again = instruction_plugin.library(tmp_path)
    assert again == first and again.stat().st_mtime_ns == built
    assert first.parent.name.startswith("plugin-")


@pytest.mark.parametrize("kwargs, words", [
    ({"runner": "tflite"}, "unknown runner 'tflite'"),
    ({"runs": 0}, "runs must be an int >= 1"),
    ({"warmup": -1}, "warmup an int >= 0"),
])
def test_bad_arguments_fail_before_emulation(tmp_path, kwargs, words):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not run")
    with pytest.raises(InvalidInputError, match=words):
        count_instructions("rpi5", model, np.zeros((1, 4), np.float32), **kwargs)


def test_unknown_device_and_missing_file_fail_before_emulation(tmp_path):
    with pytest.raises(InvalidInputError, match="unknown device 'pi9'"):
        count_instructions("pi9", tmp_path / "m.onnx", np.zeros(1, np.float32))
    with pytest.raises(InvalidInputError, match="does not exist"):
        count_many("rpi5", [Workload(tmp_path / "missing.onnx", np.zeros(1, np.float32))])
