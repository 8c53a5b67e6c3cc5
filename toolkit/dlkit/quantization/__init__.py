"""The quantize stage: an ONNX model to int8 (dynamic or static QDQ) or fp16, its accuracy cost measured and bounded."""

from dlkit.quantization.pipeline import quantize
from dlkit.quantization.results import QuantizeResult, SearchStep

__all__ = ["QuantizeResult", "SearchStep", "quantize"]
