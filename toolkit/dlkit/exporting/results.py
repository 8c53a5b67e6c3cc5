"""What `dlkit.export` returns: the file written, its inputs and outputs, and how close it is to the Keras model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from dlkit.core.parity import OutputParity
from dlkit.core.tensors import TensorInfo


@dataclass(frozen=True)
class ExportResult:
    """What `export` wrote and how close it is to the Keras model.

    Attributes:
        path: the ONNX file.
        source: what was exported, e.g. "cnn.keras (Sequential)".
        inputs, outputs: names, dtypes and shapes of the ONNX model's inputs and outputs.
        opset: the ONNX opset of the default domain.
        parity: per output, the figures of ONNX against Keras on the samples.
        atol, rtol: every output element is within `atol + rtol * |keras|` of Keras's.
        num_samples: how many samples were compared; sample_source: "random" or the data file.
        native_recurrent: recurrent layers exported as native ONNX GRU/LSTM ops.
        generic_recurrent: recurrent layers left as a generic Loop, with the reason.
        cleanup: the graph cleanup steps that were applied (empty if it was off or undone).
        size_bytes: the file's size; seconds: the wall time of the export.
        notes: anything else the user should know.
    """

    path: str
    source: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    opset: int
    parity: tuple[OutputParity, ...]
    atol: float
    num_samples: int
    sample_source: str
    rtol: float = 0.0
    native_recurrent: tuple[str, ...] = ()
    generic_recurrent: Mapping[str, str] = field(default_factory=dict)
    cleanup: tuple[str, ...] = ()
    size_bytes: int = 0
    seconds: float = 0.0
    notes: tuple[str, ...] = ()

    @property
    def max_abs_error(self) -> float:
        return max((p.max_abs_error for p in self.parity), default=0.0)

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "source": self.source,
            "inputs": [i.to_dict() for i in self.inputs],
            "outputs": [o.to_dict() for o in self.outputs],
            "opset": self.opset,
            "parity": [p.to_dict() for p in self.parity],
            "atol": self.atol,
            "rtol": self.rtol,
            "max_abs_error": self.max_abs_error,
            "num_samples": self.num_samples,
            "sample_source": self.sample_source,
            "native_recurrent": list(self.native_recurrent),
            "generic_recurrent": dict(self.generic_recurrent),
            "cleanup": list(self.cleanup),
            "size_bytes": self.size_bytes,
            "seconds": self.seconds,
            "notes": list(self.notes),
        }
