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


class DeviceSetupError(DlkitError):
    """The emulated device's environment could not be built (a download, an unpacking, pip); the message names the
    step. Exit code 2, as the fix is the user's: the network, the cache folder, then `dlkit device setup` again."""

    exit_code = 2


class DeviceError(DlkitError):
    """The emulated device's process failed or stopped answering; the message holds what it printed last."""


class QuantizationError(DlkitError):
    """A model could not be quantized; the message says why and what was tried."""


class UnsafeModelError(InvalidInputError):
    """A Keras file needs unsafe deserialization (a Lambda layer's code) and safe mode is on."""


__all__ = [
    "ConversionError",
    "DeviceError",
    "DeviceSetupError",
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
