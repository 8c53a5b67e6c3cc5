"""The verify stage: Keras, ONNX and quantized models compared on real data, as figures, a verdict and a report."""

from dlkit.verification.pipeline import verify
from dlkit.verification.results import VerifyResult

__all__ = ["VerifyResult", "verify"]
