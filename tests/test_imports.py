"""Light imports: the runtime and the CLI's help never load TensorFlow (checked in fresh interpreters)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("tensorflow", "keras", "tf2onnx", "onnx", "onnxslim")


def _modules_after(code: str) -> set[str]:
    script = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("code", [
    "import dlkit_runtime",
    "import dlkit",
    "import dlkit.cli",
    "from click.testing import CliRunner; from dlkit.cli import cli; assert CliRunner().invoke(cli, ['--help']).exit_code == 0",
    "from click.testing import CliRunner; from dlkit.cli import cli; assert CliRunner().invoke(cli, ['export', '--help']).exit_code == 0",
])
def test_no_heavy_imports(code):
    loaded = _modules_after(code)
    assert not [m for m in loaded if m.split(".")[0] in HEAVY]


def test_runtime_imports_only_stdlib_numpy_onnxruntime():
    loaded = _modules_after("import dlkit_runtime")
    # Installer hooks (.pth files of an editable install and of setuptools) are not the runtime's imports.
    hooks = {m for m in loaded if m.startswith("__editable__") or m == "_distutils_hack"}
    third_party = {m.split(".")[0] for m in loaded - hooks} - set(sys.stdlib_module_names) - {"dlkit_runtime", "__main__"}
    assert third_party <= {"numpy", "onnxruntime"}, third_party
    assert "dlkit" not in {m.split(".")[0] for m in loaded}
