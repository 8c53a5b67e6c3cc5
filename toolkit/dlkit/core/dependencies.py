"""Optional heavy dependencies, imported only by the code paths that need them."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from types import ModuleType

from dlkit.errors import MissingDependencyError

# import name -> pip distribution and the smallest extra that brings it
_PACKAGES = {
    "tensorflow": ("tensorflow", "export"),
    "keras": ("keras", "export"),
    "tf2onnx": ("tf2onnx", "export"),
    "onnx": ("onnx", "quantize"),
    "onnxslim": ("onnxslim", "quantize"),
    "sympy": ("sympy", "quantize"),
    "onnxconverter_common": ("onnxconverter-common", "quantize"),
    "PIL": ("pillow", "images"),
}


def require(module: str, feature: str) -> ModuleType:
    """Imports `module` or raises `MissingDependencyError` naming the extra to install.

    Args:
        module: the import name, e.g. "tensorflow".
        feature: what needs it, for the message, e.g. "dlkit export".
    """
    if module in ("tensorflow", "keras", "tf2onnx"):
        quiet_tensorflow()
    try:
        if module in ("tensorflow", "keras", "tf2onnx") and "tensorflow" not in sys.modules:
            with _stderr_silenced():
                return importlib.import_module(module)
        return importlib.import_module(module)
    except ImportError as err:
        dist, extra = _PACKAGES.get(module, (module, "quantize"))
        raise MissingDependencyError(
            f"{feature} needs {dist}, which is not installed; install it with: pip install 'dlkit[{extra}]'"
        ) from err


def quiet_tensorflow() -> None:
    """Keeps TensorFlow's C++ start-up chatter off the user's terminal (unless they set the variable)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def _stderr_silenced():
    """TensorFlow's native libraries print start-up notices on file descriptor 2 while they load; hide them."""
    if os.environ.get("DLKIT_TF_VERBOSE"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
