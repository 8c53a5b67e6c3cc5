"""dlkit_runtime: the on-device side of dlkit.

It imports only the standard library, numpy and onnxruntime, so it can be copied to a Raspberry Pi as is.

    >>> from dlkit_runtime import Model
    >>> model = Model("cnn.onnx")
    >>> model.predict(x)["digit"]
"""

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
from dlkit_runtime.model import Model, Prediction
from dlkit_runtime.providers import SHORT_NAMES as PROVIDERS
from dlkit_runtime.providers import ProviderWarning
from dlkit_runtime.tensors import TensorInfo

__version__ = "0.1.0"

__all__ = [
    "PROVIDERS",
    "DlkitError",
    "IntegrityError",
    "InvalidInputError",
    "MissingDependencyError",
    "Model",
    "ParityError",
    "Prediction",
    "ProviderError",
    "ProviderWarning",
    "ShapeMismatchError",
    "TensorInfo",
    "ToleranceError",
    "__version__",
]
