"""dlkit_runtime: the on-device side of dlkit.

It imports only the standard library, numpy and onnxruntime, so it can be copied to a Raspberry Pi as is.
"""

from dlkit_runtime.errors import (
    DlkitError,
    InvalidInputError,
    MissingDependencyError,
    ParityError,
    ProviderError,
    ShapeMismatchError,
    ToleranceError,
)

__version__ = "0.1.0"

__all__ = [
    "DlkitError",
    "InvalidInputError",
    "MissingDependencyError",
    "ParityError",
    "ProviderError",
    "ShapeMismatchError",
    "ToleranceError",
    "__version__",
]
