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
class SearchStep:
    """One step of the bound search, as its progress line shows it.

    Attributes:
        done: nodes the search has kept in float so far (0: the search starts). total: the most it will keep
        (every ranked node but one when all are ranked: a model with no int8 node left is not an int8 model).
        node, op_type, sqnr_db: the node it just kept in float (None at the start). figure_name: "accuracy drop"
        or "output error"; figure: the new candidate's; bound: the largest allowed. seconds: since the search
        started. eta_seconds: the longest the rest can take at the pace so far (capped by the time budget; None
        at the start). met: the figure is within the bound.
    """

    done: int
    total: int
    node: str | None
    op_type: str | None
    sqnr_db: float | None
    figure_name: str
    figure: float
    bound: float
    seconds: float
    eta_seconds: float | None
    met: bool


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
        show (another CPU's kernels), the figures below `dlkit verify`'s thresholds, a small labelled sample.
        top1_agreement: the lowest top-1 agreement of a classifier output with the float model on the check samples
        (None without a classifier output). accuracy_samples: the labelled samples the accuracy figures are from.
        accuracy_drop_interval: the 95% interval of the accuracy drop (Newcombe's paired score interval).
        thresholds: `dlkit verify`'s defaults (`core.judging`), which the figures are judged by. passed: the
        figures are within them (None when nothing was judged: random check samples, no classifier output).
        payoff: whether int8 costs less than float where it will run (`quantization.payoff.Payoff.to_dict`), None
        when not measured; payoff_note: why not.
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
    top1_agreement: float | None = None
    accuracy_samples: int | None = None
    accuracy_drop_interval: tuple[float, float] | None = None
    thresholds: Mapping[str, float] = field(default_factory=dict)
    passed: bool | None = None
    payoff: Mapping[str, Any] | None = None
    payoff_note: str = ""

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
        out["thresholds"] = dict(self.thresholds)
        out["payoff"] = None if self.payoff is None else dict(self.payoff)
        interval = self.accuracy_drop_interval
        out["accuracy_drop_interval"] = None if interval is None else list(interval)
        out["size_ratio"] = self.size_ratio
        return out
