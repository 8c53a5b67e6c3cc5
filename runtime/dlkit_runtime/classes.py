"""Class predictions that say what their numbers are: a logit, a probability or a log-probability.

`dlkit export` records each output's kind in the metadata (`dlkit.output_kinds`): "probability" for an output made by
Softmax or Sigmoid, "log_probability" for LogSoftmax, "logit" for any other (batch, classes) float output. A model
without that record (exported elsewhere) gives "score": a value whose meaning dlkit does not know.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from dlkit_runtime.errors import InvalidInputError

KINDS = ("logit", "probability", "log_probability", "score")


@dataclass(frozen=True)
class Prediction:
    """One of a sample's top classes.

    Attributes:
        index: the class index in the output.
        label: its label from the metadata (the index as text when there are none).
        score: the output's value for it.
        kind: what `score` is: "logit", "probability", "log_probability", or "score" when the model does not say.
    """

    index: int
    label: str
    score: float
    kind: str = "score"

    def to_dict(self) -> dict:
        """{"index", "label", and the value under its kind: "logit", "probability", "log_probability" or "score"}."""
        return {"index": self.index, "label": self.label, self.kind: self.score}


def top_classes(scores: np.ndarray, top_k: int, labels: Sequence[str] | None = None,
                name: str = "scores", kind: str = "score") -> list[list[Prediction]]:
    """The `top_k` classes of each row of `scores` (batch, classes), best first, named by `labels`.

    Raises:
        InvalidInputError: `scores` is not (batch, classes).
    """
    if scores.ndim != 2:
        raise InvalidInputError(f"output '{name}' has shape {scores.shape}, not (batch, classes); "
                                "classify needs class scores")
    k = max(1, min(int(top_k), scores.shape[1]))
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [[Prediction(int(i), labels[i] if labels and i < len(labels) else str(int(i)), float(row[i]), kind)
             for i in idx] for row, idx in zip(scores, order)]


def output_kind(metadata: dict[str, Any], name: str) -> str:
    """What the output `name` holds, from dlkit's metadata ("score" when it does not say)."""
    kinds = metadata.get("output_kinds")
    kind = kinds.get(name) if isinstance(kinds, dict) else None
    return kind if kind in KINDS else "score"


def as_probabilities(scores: np.ndarray, kind: str) -> np.ndarray:
    """`scores` of `kind` as probabilities over the last axis: softmax of logits (and of unknown scores), exp of
    log-probabilities, probabilities as they are."""
    scores = np.asarray(scores, dtype=np.float64)
    if kind == "probability":
        return scores
    if kind == "log_probability":
        return np.exp(scores)
    shifted = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def ranked(scores: np.ndarray, top_k: int, labels: Sequence[str] | None, name: str, kind: str,
           softmax: bool = False) -> list[list[Prediction]]:
    """`top_classes` of an output of `kind`, as probabilities when `softmax` asks for them."""
    if softmax:
        scores, kind = as_probabilities(scores, kind), "probability"
    return top_classes(scores, top_k, labels, name, kind)
