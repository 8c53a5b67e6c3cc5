"""The export stage: a Keras model (file, folder or object) to an ONNX file that onnxruntime runs as Keras does."""

from dlkit.exporting.pipeline import export
from dlkit.exporting.results import ExportResult

__all__ = ["ExportResult", "export"]
