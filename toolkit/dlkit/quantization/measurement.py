"""A candidate measured: run on the check samples, compared with the float model, scored against the bound and the
collapse check, and its top-1 accuracy on labelled eval data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dlkit.core import sessions
from dlkit.core.datasources import DataSource
from dlkit.core.parity import OutputParity
from dlkit.quantization.evaluation import Top1, bound, collapse, compare, top1_classes
from dlkit.quantization.sources import CheckSamples


@dataclass(frozen=True)
class Measurement:
    """A candidate and its figures against the float model.

    Attributes:
        model: the candidate (a quantized ModelProto). parity: its outputs against the float model's on the check
        samples; output_error: their relative error; agreement: their lowest top-1 agreement (classifier outputs,
        else None). accuracy: top-1 accuracy on the eval data, None without labels or when not asked for.
        bound: the bound in force, or None; metric: the bounded figure (accuracy drop or output error; 0.0 without a
        bound; None when the accuracy it needs was not measured).
        collapse: what is broken (constant, far-off or not finite outputs), or None.
    """

    model: Any
    parity: tuple[OutputParity, ...]
    output_error: float
    agreement: float | None
    accuracy: Top1 | None
    bound: float | None
    metric: float | None
    collapse: str | None

    @property
    def cosine(self) -> float:
        """The lowest cosine similarity of an output with the float model's."""
        return min(f.cosine_similarity for f in self.parity)


class FloatReference:
    """The float model's outputs on the check samples (run once, on this host), and what a candidate is held to.

    Args:
        prepared: the float model, prepared. check: the check samples. eval_data: labelled eval data for top-1
        accuracy, or None. eval_batch: the batch the candidates run at. device: a `dlkit.device.Emulator` that
        runs the candidates, or None for this host. max_accuracy_drop, max_output_error: the bound, or None.
    """

    def __init__(self, prepared: Any, check: CheckSamples, eval_data: DataSource | None, *, eval_batch: int,
                 device: Any, max_accuracy_drop: float | None, max_output_error: float | None):
        self.prepared, self.check, self.eval_data = prepared, check, eval_data
        self.eval_batch, self.device = eval_batch, device
        self.max_accuracy_drop, self.max_output_error = max_accuracy_drop, max_output_error
        self.outputs = sessions.run(prepared, check.feeds, check.what)
        self._float_classes: np.ndarray | None = None  # measured with the first candidate's, then kept

    def measure(self, candidate: Any, *, with_accuracy: bool = True) -> Measurement:
        """Runs `candidate` on the check samples (and on the eval data, `with_accuracy`) and scores it.

        Raises:
            InvalidInputError: the candidate does not run on the samples.
        """
        got = sessions.run(candidate, self.check.feeds, self.check.what, batch=self.eval_batch, device=self.device)
        parity, error, agreement = compare(self.outputs, got)
        top1 = self._accuracy(candidate) if with_accuracy else None
        if top1 is not None:  # on every labelled eval sample, as verify counts it, not the first 1,000 only
            agreement = top1.agreement
        limit, metric = bound(self.max_accuracy_drop, self.max_output_error, top1, error)
        return Measurement(candidate, parity, error, agreement, top1, limit, metric,
                           collapse(self.outputs, parity, error))

    def _accuracy(self, candidate: Any) -> Top1 | None:
        data = self.eval_data
        if data is None or data.labels is None:
            return None
        if self._float_classes is None:  # the float model on this host, once
            self._float_classes = top1_classes(self.prepared, data)
        classes = top1_classes(candidate, data, batch=self.eval_batch, device=self.device)
        return Top1.of(self._float_classes, classes, np.asarray(data.labels))
