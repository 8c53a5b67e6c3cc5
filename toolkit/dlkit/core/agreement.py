"""Figures of agreement between a reference's and a candidate's outputs, accumulated batch by batch.

Running maxima and sums (means, cosine, relative error), agreement and confusion counts, a fixed-bin histogram of
per-sample error and a small heap of the samples that disagree most: memory does not grow with the samples.
`dlkit.parity.compare` computes the first figures on whole arrays; these are their streaming twins.
"""

from __future__ import annotations

import heapq
from dataclasses import asdict, dataclass, field
from typing import Mapping

import numpy as np

from dlkit.core.figures import cosine_of_sums, relative_error_of_sums

# per-sample error histogram: 4 bins per decade from 1e-9 to 10, plus one bin below (exact) and one above
HISTOGRAM_EDGES = tuple(float(x) for x in np.logspace(-9, 1, 41))
MAX_CONFUSION_CLASSES = 100
WORST_SAMPLES = 12


@dataclass(frozen=True)
class WorstSample:
    """A sample where the candidate disagrees most with the reference.

    Attributes:
        index: its position in the data. error: its largest absolute error on the output.
        reference_class, candidate_class: the top-1 classes (classifiers), else None.
        label: its true label, when the data has labels. inputs: the sample's inputs (not in `to_dict`).
    """

    index: int
    error: float
    reference_class: int | None
    candidate_class: int | None
    label: int | None
    inputs: Mapping[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "inputs"}


@dataclass(frozen=True)
class OutputFigures:
    """How one output of a candidate compares with the reference over all samples.

    Attributes:
        name: the output. max_abs_error, mean_abs_error: over every element.
        relative_error: ||candidate - reference|| / ||reference||. cosine_similarity: of the flattened outputs.
        top1_agreement: fraction of samples with the same top-1 class (classifiers, else None).
        top5_agreement: fraction whose reference top-1 class is in the candidate's top 5.
        reference_accuracy, candidate_accuracy, accuracy_drop: top-1 accuracy with labels (reference - candidate).
        histogram: counts of per-sample max abs error in the bins of `HISTOGRAM_EDGES` (first: below 1e-9).
        confusion: counts[reference class][candidate class], for classifiers of at most 100 classes.
        worst: the samples that disagree most, worst first.
    """

    name: str
    max_abs_error: float
    mean_abs_error: float
    relative_error: float
    cosine_similarity: float
    top1_agreement: float | None = None
    top5_agreement: float | None = None
    reference_accuracy: float | None = None
    candidate_accuracy: float | None = None
    accuracy_drop: float | None = None
    histogram: tuple[int, ...] = ()
    confusion: tuple[tuple[int, ...], ...] | None = None
    worst: tuple[WorstSample, ...] = ()

    def to_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k not in ("histogram", "confusion", "worst")}
        out["histogram"] = {"edges": list(HISTOGRAM_EDGES), "counts": list(self.histogram)}
        out["confusion"] = None if self.confusion is None else [list(r) for r in self.confusion]
        out["worst"] = [w.to_dict() for w in self.worst]
        return out


class RunningFigures:
    """The figures of one output of one candidate, updated batch by batch; `figures()` gives the result.

    Args:
        name: the output. classes: its number of classes (0 when it is not a classifier).
        primary: keep the worst samples for this output. labelled: count accuracy against the labels.
    """

    def __init__(self, name: str, classes: int, primary: bool, labelled: bool):
        self.name, self.classes, self.primary, self.labelled = name, classes, primary, labelled
        self.count = self.elements = self.agree = self.top5 = self.ref_correct = self.cand_correct = 0
        self.max = self.abs_sum = self.rc = self.rr = self.cc = self.dd = 0.0
        self.histogram = np.zeros(len(HISTOGRAM_EDGES) + 1, np.int64)
        self.confusion = np.zeros((classes, classes), np.int64) if 2 <= classes <= MAX_CONFUSION_CLASSES else None
        self.heap: list = []  # (disagrees, error, -index, WorstSample): the smallest is the least bad kept

    def update(self, reference, candidate, start, batch, labels) -> None:
        n = len(reference)
        r = reference.astype(np.float64).reshape(n, -1)
        c = candidate.astype(np.float64).reshape(n, -1)
        diff = r - c
        absdiff = np.abs(diff)
        per_sample = absdiff.max(axis=1) if absdiff.shape[1] else np.zeros(n)
        per_sample = np.where(np.isfinite(per_sample), per_sample, np.inf)
        self.max = max(self.max, float(per_sample.max(initial=0.0)))
        self.abs_sum += float(absdiff.sum())
        self.rc, self.rr, self.cc = self.rc + float((r * c).sum()), self.rr + float((r * r).sum()), self.cc + float((c * c).sum())
        self.dd += float((diff * diff).sum())
        self.count, self.elements = self.count + n, self.elements + absdiff.size
        self.histogram += np.bincount(np.searchsorted(HISTOGRAM_EDGES, per_sample, side="right"),
                                      minlength=len(self.histogram))
        ref_top = cand_top = None
        if self.classes:
            ref_top, cand_top = r.argmax(axis=1), c.argmax(axis=1)
            self.agree += int((ref_top == cand_top).sum())
            k = min(5, self.classes)
            top = np.argpartition(-c, k - 1, axis=1)[:, :k]
            self.top5 += int((top == ref_top[:, None]).any(axis=1).sum())
            if self.confusion is not None:
                np.add.at(self.confusion, (ref_top, cand_top), 1)
            if self.labelled and labels is not None:
                self.ref_correct += int((ref_top == labels).sum())
                self.cand_correct += int((cand_top == labels).sum())
        if self.primary:
            self._keep_worst(per_sample, ref_top, cand_top, start, batch, labels)

    def _keep_worst(self, per_sample, ref_top, cand_top, start, batch, labels) -> None:
        disagrees = np.zeros(len(per_sample), bool) if ref_top is None else ref_top != cand_top
        order = np.lexsort((per_sample, disagrees))[::-1][:WORST_SAMPLES]  # disagreeing first, then by error
        for i in order:
            key = (bool(disagrees[i]), float(per_sample[i]), -(start + int(i)))
            if len(self.heap) == WORST_SAMPLES and key <= self.heap[0][:3]:
                break
            sample = WorstSample(start + int(i), float(per_sample[i]),
                                 None if ref_top is None else int(ref_top[i]),
                                 None if cand_top is None else int(cand_top[i]),
                                 None if labels is None else int(labels[i]),
                                 {k: np.array(v[i]) for k, v in batch.items() if i < len(v)})
            item = (*key, sample)
            if len(self.heap) < WORST_SAMPLES:
                heapq.heappush(self.heap, item)
            else:
                heapq.heapreplace(self.heap, item)

    def figures(self) -> OutputFigures:
        cosine = cosine_of_sums(self.rc, self.rr, self.cc, self.dd)
        relative = relative_error_of_sums(self.dd, self.rr)
        accuracy = {}
        if self.labelled and self.count:
            ref, cand = self.ref_correct / self.count, self.cand_correct / self.count
            accuracy = {"reference_accuracy": ref, "candidate_accuracy": cand, "accuracy_drop": ref - cand}
        return OutputFigures(
            self.name, self.max, self.abs_sum / self.elements if self.elements else 0.0, relative, cosine,
            top1_agreement=self.agree / self.count if self.classes and self.count else None,
            top5_agreement=self.top5 / self.count if self.classes and self.count else None, **accuracy,
            histogram=tuple(int(x) for x in self.histogram),
            confusion=None if self.confusion is None else tuple(tuple(int(x) for x in row) for row in self.confusion),
            worst=tuple(item[3] for item in sorted(self.heap, key=lambda item: item[:3], reverse=True)),
        )
