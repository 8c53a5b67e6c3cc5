"""Detections compared box by box: the intersection over union of corner boxes, and a greedy one-to-one matching of
a candidate's detections to a reference's (same class, best IoU first, the reference's highest scores first), as
`dlkit.export --with-decoding` (IoU >= 0.99) and `dlkit.verify` (IoU >= 0.5) compare a detector's outputs."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Detections(NamedTuple):
    """One image's valid detections: boxes (n, 4) in corner form (xyxy or yxyx: IoU is the same), scores (n,),
    classes (n,)."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray


class Matching(NamedTuple):
    """What matched: pairs of (reference index, candidate index), their IoUs and score differences
    (candidate - reference); the counts of reference and candidate detections."""

    pairs: list[tuple[int, int]]
    ious: np.ndarray
    score_differences: np.ndarray
    reference_count: int
    candidate_count: int


def valid(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, count: int | None = None) -> Detections:
    """One image's first `count` detections (KerasHub pads the rest with -1), or those whose class is >= 0."""
    boxes, scores, classes = np.asarray(boxes, np.float64), np.asarray(scores, np.float64), np.asarray(classes)
    keep = np.arange(len(scores)) < count if count is not None else classes >= 0
    return Detections(boxes[keep].reshape(-1, 4), scores[keep], classes[keep])


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) intersection over union of corner boxes (the corners in either order)."""
    a, b = _corners(np.asarray(a, np.float64).reshape(-1, 4)), _corners(np.asarray(b, np.float64).reshape(-1, 4))
    low = np.maximum(a[:, None, :2], b[None, :, :2])
    high = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(high - low, 0, None), axis=2)
    area_a, area_b = np.prod(a[:, 2:] - a[:, :2], axis=1), np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(union > 0, inter / np.where(union > 0, union, 1), (union == 0) * 1.0)
    return out


def match(reference: Detections, candidate: Detections, min_iou: float) -> Matching:
    """Each reference detection, highest score first, takes the unmatched candidate detection of its class with the
    largest IoU, when that IoU is at least `min_iou`."""
    overlaps = iou(reference.boxes, candidate.boxes)
    taken = np.zeros(len(candidate.scores), bool)
    pairs, ious, diffs = [], [], []
    for i in np.argsort(-reference.scores, kind="stable"):
        row = np.where(~taken & (candidate.classes == reference.classes[i]), overlaps[i], -1.0)
        j = int(np.argmax(row)) if len(row) else -1
        if j < 0 or row[j] < min_iou:
            continue
        taken[j] = True
        pairs.append((int(i), j))
        ious.append(row[j])
        diffs.append(candidate.scores[j] - reference.scores[i])
    return Matching(pairs, np.asarray(ious, np.float64), np.asarray(diffs, np.float64), len(reference.scores),
                    len(candidate.scores))


def _corners(boxes: np.ndarray) -> np.ndarray:
    """Boxes as (low, low, high, high) per axis, whatever order the corners come in."""
    return np.concatenate([np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])], axis=1)
