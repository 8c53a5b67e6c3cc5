"""dlkit: Keras models to ONNX, quantized, verified and shipped to small devices.

The public verbs are re-exported here and load their heavy dependencies only when called:
`import dlkit` does not import TensorFlow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dlkit.errors import (
    ConversionError,
    DlkitError,
    InvalidInputError,
    MissingDependencyError,
    ParityError,
    ProviderError,
    QuantizationError,
    ShapeMismatchError,
    ToleranceError,
    UnsafeModelError,
)

__version__ = "0.1.0"

if TYPE_CHECKING:
    from dlkit.bundling import BundleResult, bundle
    from dlkit.demonstration import DemoResult, demo
    from dlkit.exporting import ExportResult, export
    from dlkit.quantization import QuantizeResult, quantize
    from dlkit.running import BenchResult, InspectResult, bench, inspect
    from dlkit.verification import VerifyResult, verify

_LAZY = {
    "demo": "dlkit.demonstration",
    "DemoResult": "dlkit.demonstration",
    "export": "dlkit.exporting",
    "ExportResult": "dlkit.exporting",
    "bench": "dlkit.running",
    "BenchResult": "dlkit.running",
    "bundle": "dlkit.bundling",
    "BundleResult": "dlkit.bundling",
    "inspect": "dlkit.running",
    "InspectResult": "dlkit.running",
    "quantize": "dlkit.quantization",
    "QuantizeResult": "dlkit.quantization",
    "verify": "dlkit.verification",
    "VerifyResult": "dlkit.verification",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dlkit' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "BenchResult",
    "BundleResult",
    "ConversionError",
    "DemoResult",
    "DlkitError",
    "ExportResult",
    "InspectResult",
    "InvalidInputError",
    "MissingDependencyError",
    "ParityError",
    "ProviderError",
    "QuantizationError",
    "QuantizeResult",
    "ShapeMismatchError",
    "ToleranceError",
    "UnsafeModelError",
    "VerifyResult",
    "__version__",
    "bench",
    "demo",
    "bundle",
    "export",
    "inspect",
    "quantize",
    "verify",
]
