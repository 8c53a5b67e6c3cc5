"""dlkit's errors: the runtime's hierarchy, plus the toolkit's own."""

from __future__ import annotations

from dlkit_runtime.errors import (
    DlkitError,
    IntegrityError,
    InvalidInputError,
    MissingDependencyError,
    ParityError,
    ProviderError,
    ShapeMismatchError,
    ToleranceError,
)


class ConversionError(DlkitError):
    """A model could not be converted to ONNX; the message names the layer or op that failed."""


class QuantizationError(DlkitError):
    """A model could not be quantized; the message says why and what was tried."""


class UnsafeModelError(InvalidInputError):
    """A Keras file needs unsafe deserialization (a Lambda layer's code) and safe mode is on."""


__all__ = [
    "ConversionError",
    "DlkitError",
    "IntegrityError",
    "InvalidInputError",
    "MissingDependencyError",
    "ParityError",
    "ProviderError",
    "QuantizationError",
    "ShapeMismatchError",
    "ToleranceError",
    "UnsafeModelError",
]
