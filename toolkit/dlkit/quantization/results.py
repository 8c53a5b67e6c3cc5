"""What `dlkit.quantize` returns: the file written, how it was made and what it costs, measured."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from dlkit.core import sessions
from dlkit.core.parity import OutputParity


@dataclass(frozen=True)
class KeptNode:
    """A node the accuracy bound kept in float, and what it bought.

    Attributes:
        name: the node; op_type: its operator.
        sqnr_db: its signal-to-quantization-noise ratio when quantized (lower is more sensitive).
        metric_after: the bounded figure (accuracy drop or output error) once it was kept in float.
    """

    name: str
    op_type: str
    sqnr_db: float
    metric_after: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class QuantizeResult:
    """What `quantize` wrote and what it cost.

    Attributes:
        path: the quantized file. mode: "dynamic", "static" or "fp16"; reason: why that mode.
        target: the int8 preset the model is made for ("x86-vnni", "x86-avx2", "arm64", "gpu"; None for fp16);
        target_reason: why. host_cpu: this host's CPU (`dlkit_runtime.cpu.CpuKind`). computed_on: whose kernels
        computed the quantized model's figures: this host, or an emulated device (its CPU kind and onnxruntime).
        settings: the quantizer settings in effect.
        nodes_quantized: compute nodes running in int8 (or fp16). nodes_float: compute nodes left in float.
        kept_in_float: nodes the accuracy bound kept in float, in the order it kept them.
        size_before_bytes, size_after_bytes: file sizes (with external weight files).
        float_weights_bytes: the float model's weights once materialized: more than its file when Constant or
        ConstantOfShape nodes generate them.
        parity: the quantized model's outputs against the float model's on `num_samples` check samples.
        check_source: where the check samples came from.
        float_accuracy, quantized_accuracy, accuracy_drop: top-1 accuracy on the evaluation data, when labelled.
        output_error: relative error of the outputs (||q - f|| / ||f||) on the check samples.
        preparation: what was done to the model before quantizing.
        eval_batch_size: the batch size the quantized model ran at for the figures (a dynamic int8 model's outputs
        depend on the batch it runs in; static int8, fp16 and float do not). warnings: what the figures do not
        show (another CPU's kernels).
    """

    path: str
    mode: str
    reason: str
    target: str | None
    settings: Mapping[str, Any]
    nodes_quantized: int
    nodes_float: tuple[str, ...]
    kept_in_float: tuple[KeptNode, ...]
    size_before_bytes: int
    size_after_bytes: int
    parity: tuple[OutputParity, ...]
    num_samples: int
    check_source: str
    output_error: float
    float_accuracy: float | None = None
    quantized_accuracy: float | None = None
    accuracy_drop: float | None = None
    preparation: tuple[str, ...] = ()
    seconds: float = 0.0
    target_reason: str = ""
    host_cpu: Mapping[str, Any] = field(default_factory=dict)
    eval_batch_size: int = sessions.BATCH
    warnings: tuple[str, ...] = ()
    float_weights_bytes: int = 0
    computed_on: Mapping[str, Any] = field(default_factory=dict)

    @property
    def size_ratio(self) -> float:
        return self.size_after_bytes / self.size_before_bytes if self.size_before_bytes else 1.0

    def to_dict(self) -> dict:
        out = asdict(self)
        out["parity"] = [p.to_dict() for p in self.parity]
        out["kept_in_float"] = [k.to_dict() for k in self.kept_in_float]
        out["nodes_float"] = list(self.nodes_float)
        out["preparation"] = list(self.preparation)
        out["settings"] = dict(self.settings)
        out["host_cpu"] = dict(self.host_cpu)
        out["computed_on"] = dict(self.computed_on)
        out["warnings"] = list(self.warnings)
        out["size_ratio"] = self.size_ratio
        return out
