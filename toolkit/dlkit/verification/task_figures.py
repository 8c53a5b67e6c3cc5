"""Figures of `dlkit.verify` for outputs that are not class scores, chosen by the kinds the export recorded
(`dlkit.output_kinds`, `exporting.output_kinds`):

- detections (the outputs "boxes", "scores", "classes" and "count" of `dlkit export --with-decoding`): each image's
  candidate detections matched one to one to the reference's (same class, IoU >= 0.5, `core.boxes.match`), giving
  precision (matched / candidate detections), recall (matched / reference detections), the mean IoU and the largest
  score error of the matched ones;
- segmentation maps (a per-pixel Softmax or Sigmoid, (batch, height, width, classes)): the agreement of the
  per-pixel argmax, and the mean over classes of the IoU of the candidate's class masks with the reference's;
- embeddings (an L2-normalized (batch, features) output): the mean and the smallest cosine of a sample's vectors.

Precision, recall and pixel agreement are judged against `min_agreement`, as top-1 agreement is for class scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple

import numpy as np

from dlkit.core import boxes as _boxes

DETECTION_IOU = 0.5
JUDGED = ("precision", "recall", "pixel_agreement")  # figures that must be at least min_agreement
_DETECTION_KINDS = ("boxes", "scores", "classes", "count")


@dataclass(frozen=True)
class TaskFigures:
    """One task's figures for one candidate. kind: "detection", "segmentation" or "embedding". output: the output
    they are on (a detector's boxes output). figures: by name (see the module's docstring)."""

    kind: str
    output: str
    figures: Mapping[str, float] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        """One line of the figures."""
        f = self.figures
        if self.kind == "detection":
            return (f"detections: {f['matched']:.0f} of {f['reference_detections']:.0f} reference boxes matched at IoU "
                    f">= {DETECTION_IOU} ({f['candidate_detections']:.0f} candidate boxes): precision "
                    f"{100 * f['precision']:.2f}%, recall {100 * f['recall']:.2f}%, mean IoU {f['mean_iou']:.4f}, max "
                    f"score error {f['max_score_error']:.3g}")
        if self.kind == "segmentation":
            return (f"segmentation '{self.output}': pixel agreement {100 * f['pixel_agreement']:.2f}%, mean IoU "
                    f"{100 * f['mean_iou']:.2f}% over {f['classes']:.0f} classes")
        return f"embedding '{self.output}': mean cosine {f['mean_cosine']:.6f}, min cosine {f['min_cosine']:.6f}"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "output": self.output, "figures": dict(self.figures), "summary": self.summary}


class TaskPlan(NamedTuple):
    """The outputs judged by task figures: detection ({kind: output name}, or None), segmentation maps, embeddings."""

    detection: Mapping[str, str] | None
    segmentation: tuple[str, ...]
    embedding: tuple[str, ...]

    @property
    def outputs(self) -> tuple[str, ...]:
        """Every output these figures cover (not class scores: no top-1 agreement)."""
        return (*(self.detection or {}).values(), *self.segmentation, *self.embedding)

    def running(self) -> list:
        """Fresh accumulators for one candidate."""
        found: list = [_Detection(self.detection)] if self.detection else []
        return found + [_Segmentation(n) for n in self.segmentation] + [_Embedding(n) for n in self.embedding]


def task_plan(metadata: Mapping[str, Any], outputs) -> TaskPlan:
    """The task figures the candidate's recorded output kinds call for, among `outputs` (the reference's)."""
    kinds = metadata.get("output_kinds")
    kinds = {k: v for k, v in kinds.items() if k in outputs} if isinstance(kinds, dict) else {}
    by_kind = {v: k for k, v in kinds.items() if v in _DETECTION_KINDS}
    detection = by_kind if {"boxes", "scores", "classes"} <= set(by_kind) else None
    return TaskPlan(detection, tuple(k for k, v in kinds.items() if v == "segmentation"),
                    tuple(k for k, v in kinds.items() if v == "embedding"))


def judge(figures: TaskFigures, min_agreement: float | None) -> list[tuple[str, float, float]]:
    """(figure, limit, value) of each judged figure below `min_agreement`."""
    if min_agreement is None:
        return []
    return [(name, min_agreement, figures.figures[name]) for name in JUDGED
            if name in figures.figures and figures.figures[name] < min_agreement]


class _Detection:
    def __init__(self, names: Mapping[str, str]):
        self.names = names
        self.ref = self.cand = self.matched = 0
        self.iou_sum, self.worst_score = 0.0, 0.0

    def update(self, reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray]) -> None:
        n = self.names
        for i in range(len(reference[n["boxes"]])):
            ref, cand = (_boxes.valid(o[n["boxes"]][i], o[n["scores"]][i], o[n["classes"]][i],
                                      int(o[n["count"]][i]) if "count" in n else None) for o in (reference, candidate))
            found = _boxes.match(ref, cand, DETECTION_IOU)
            self.ref, self.cand, self.matched = self.ref + found.reference_count, \
                self.cand + found.candidate_count, self.matched + len(found.pairs)
            self.iou_sum += float(found.ious.sum())
            if found.pairs:
                self.worst_score = max(self.worst_score, float(np.abs(found.score_differences).max()))

    def figures(self) -> TaskFigures:
        return TaskFigures("detection", self.names["boxes"], {
            "reference_detections": float(self.ref), "candidate_detections": float(self.cand),
            "matched": float(self.matched),
            "precision": self.matched / self.cand if self.cand else 1.0,
            "recall": self.matched / self.ref if self.ref else 1.0,
            "mean_iou": self.iou_sum / self.matched if self.matched else 1.0,
            "max_score_error": self.worst_score})


class _Segmentation:
    def __init__(self, name: str):
        self.name, self.agree, self.pixels, self.confusion = name, 0, 0, None

    def update(self, reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray]) -> None:
        ref, cand = np.asarray(reference[self.name]), np.asarray(candidate[self.name])
        classes = ref.shape[-1]
        r, c = ref.argmax(axis=-1).ravel(), cand.argmax(axis=-1).ravel()
        self.agree, self.pixels = self.agree + int((r == c).sum()), self.pixels + r.size
        counts = np.bincount(r * classes + c, minlength=classes * classes).reshape(classes, classes)
        self.confusion = counts if self.confusion is None else self.confusion + counts

    def figures(self) -> TaskFigures:
        m = self.confusion if self.confusion is not None else np.zeros((1, 1), np.int64)
        hits = np.diag(m).astype(np.float64)
        union = m.sum(axis=0) + m.sum(axis=1) - hits
        present = union > 0  # classes in either map
        return TaskFigures("segmentation", self.name, {
            "pixel_agreement": self.agree / self.pixels if self.pixels else 1.0,
            "mean_iou": float((hits[present] / union[present]).mean()) if present.any() else 1.0,
            "classes": float(present.sum())})


class _Embedding:
    def __init__(self, name: str):
        self.name, self.total, self.count, self.worst = name, 0.0, 0, 1.0

    def update(self, reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray]) -> None:
        r = np.asarray(reference[self.name], np.float64).reshape(len(reference[self.name]), -1)
        c = np.asarray(candidate[self.name], np.float64).reshape(len(r), -1)
        norms = np.linalg.norm(r, axis=1) * np.linalg.norm(c, axis=1)
        cosine = np.where(norms > 0, (r * c).sum(axis=1) / np.where(norms > 0, norms, 1), 1.0)
        self.total, self.count = self.total + float(cosine.sum()), self.count + len(cosine)
        self.worst = min(self.worst, float(cosine.min(initial=1.0)))

    def figures(self) -> TaskFigures:
        return TaskFigures("embedding", self.name, {"mean_cosine": self.total / self.count if self.count else 1.0,
                                                    "min_cosine": self.worst})
