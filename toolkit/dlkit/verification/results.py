"""What `dlkit.verify` returns: figures per candidate (and where they were computed), the breached thresholds, and
the run's facts (data, samples, this host's CPU, the emulated device)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from dlkit.core.agreement import OutputFigures
from dlkit.verification.candidates import NodeError
from dlkit.verification.decoding import DecodingCheck
from dlkit.verification.task_figures import TaskFigures
from dlkit.core.tensors import TensorInfo


@dataclass(frozen=True)
class Breach:
    """One figure outside its threshold.

    Attributes:
        candidate: the candidate's path. output: the output's name. figure: the figure's name (`max_abs_error`,
        `top1_agreement`, `accuracy_drop`). limit: the threshold. value: the measured figure.
    """

    candidate: str
    output: str
    figure: str
    limit: float
    value: float

    @property
    def message(self) -> str:
        word = "below" if self.figure in ("top1_agreement", "precision", "recall", "pixel_agreement") else "above"
        return (f"{Path(self.candidate).name} output '{self.output}': {self.figure} {self.value:.6g} is {word} "
                f"the limit {self.limit:g} by {abs(self.value - self.limit):.4g}")

    def to_dict(self) -> dict:
        return {**asdict(self), "message": self.message}


@dataclass(frozen=True)
class CandidateResult:
    """One candidate's figures. kind: "float", "int8" or "fp16"; dynamic: int8 with per-batch scales.
    nodes: its least accurate quantized nodes. target: the int8 target it was quantized for (dlkit's metadata).
    batch_size: the batch it ran in. warning: why its figures are not the target's, if they are not.
    tasks: figures of the outputs that are not class scores (detections, segmentation maps, embeddings)."""

    path: str
    kind: str
    outputs: tuple[OutputFigures, ...]
    nodes: tuple[NodeError, ...] = ()
    breaches: tuple[Breach, ...] = ()
    dynamic: bool = False
    target: str | None = None
    batch_size: int | None = None
    warning: str | None = None
    computed_on: Mapping[str, Any] = field(default_factory=dict)
    judged: bool = True
    tasks: tuple[TaskFigures, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.breaches

    @property
    def where(self) -> str:
        """`host (x86-vnni)` or `rpi4 (emulated cortex-a72)`: whose kernels computed the figures."""
        on = self.computed_on
        if on.get("where") == "device":
            return f"{on.get('device')} (emulated {on.get('cpu_model')})"
        return f"host ({(on.get('cpu') or {}).get('family', '?')})"

    def to_dict(self) -> dict:
        return {"path": self.path, "kind": self.kind, "dynamic": self.dynamic, "target": self.target,
                "batch_size": self.batch_size, "warning": self.warning, "passed": self.passed,
                "computed_on": dict(self.computed_on), "where": self.where, "judged": self.judged,
                "outputs": [o.to_dict() for o in self.outputs], "nodes": [n.to_dict() for n in self.nodes],
                "breaches": [b.to_dict() for b in self.breaches], "tasks": [t.to_dict() for t in self.tasks]}


@dataclass(frozen=True)
class VerifyResult:
    """What `verify` measured.

    Attributes:
        reference: the reference model (a path, or a Keras model's description). data: where samples came from.
        num_samples: samples compared. inputs: the models' inputs. candidates: figures per candidate.
        thresholds: the limits checked. passed: no figure breached them. breaches: those that did.
        class_names: class labels from the model's metadata or the image folder. report: the HTML file written.
        notes: what was skipped and why. seconds: wall time.
        host_cpu: this host's CPU (`dlkit_runtime.cpu.CpuKind`), whose kernels computed the reference and, without
            a device, every candidate. onnxruntime: the host's version and the providers its candidates ran on.
        device: the emulated device the candidates ran on (its CPU kind, onnxruntime and Python), or None.
        decoding: with a Keras reference and a folder of images, dlkit's pixels against the ones TensorFlow's image
            pipeline gives and what that does to the reference (`verification.decoding.DecodingCheck`), else None.
    """

    reference: str
    data: str
    num_samples: int
    inputs: tuple[TensorInfo, ...]
    candidates: tuple[CandidateResult, ...]
    thresholds: Mapping[str, float | None]
    class_names: tuple[str, ...] | None = None
    report: str | None = None
    notes: tuple[str, ...] = ()
    seconds: float = 0.0
    host_cpu: Mapping[str, Any] = field(default_factory=dict)
    onnxruntime: Mapping[str, Any] = field(default_factory=dict)
    device: Mapping[str, Any] | None = None
    decoding: DecodingCheck | None = None

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(f"{Path(c.path).name}: {c.warning}" for c in self.candidates if c.warning)

    @property
    def breaches(self) -> tuple[Breach, ...]:
        return tuple(b for c in self.candidates for b in c.breaches)

    @property
    def passed(self) -> bool:
        return not self.breaches

    def to_dict(self) -> dict:
        return {"reference": self.reference, "data": self.data, "num_samples": self.num_samples,
                "inputs": [i.to_dict() for i in self.inputs], "passed": self.passed,
                "breaches": [b.to_dict() for b in self.breaches], "thresholds": dict(self.thresholds),
                "candidates": [c.to_dict() for c in self.candidates],
                "class_names": None if self.class_names is None else list(self.class_names),
                "report": self.report, "notes": list(self.notes), "seconds": self.seconds,
                "host_cpu": dict(self.host_cpu), "onnxruntime": dict(self.onnxruntime),
                "device": None if self.device is None else dict(self.device), "warnings": list(self.warnings),
                **({} if self.decoding is None else {"decoding": self.decoding.to_dict()})}
