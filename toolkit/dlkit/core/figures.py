"""The one definition of each figure that compares a candidate's outputs with a reference's: relative error,
cosine similarity and top-1 agreement. Each is computed from running sums, so a figure over a whole data set
streamed batch by batch (`core.agreement.RunningFigures`) is the same formula as over arrays in memory."""

from __future__ import annotations

from typing import Mapping

import numpy as np


def relative_error_of_sums(diff_squares: float, reference_squares: float) -> float:
    """||candidate - reference|| / ||reference|| from the sums of squares; a zero reference gives 0.0 when the
    candidate is zero too, else 1.0."""
    if reference_squares > 0:
        return (diff_squares ** 0.5) / (reference_squares ** 0.5)
    return float(diff_squares > 0)


def cosine_of_sums(dot: float, reference_squares: float, candidate_squares: float, diff_squares: float) -> float:
    """The cosine of the angle between the flattened outputs, from their dot product and sums of squares; 1.0 for
    two zero outputs, 0.0 when only one is zero."""
    norms = (reference_squares * candidate_squares) ** 0.5
    return dot / norms if norms > 0 else float(diff_squares == 0)


def _sums(reference: np.ndarray, candidate: np.ndarray) -> tuple[float, float, float, float]:
    r = np.asarray(reference, np.float64).ravel()
    c = np.asarray(candidate, np.float64).ravel()
    d = c - r
    return float(r @ c), float(r @ r), float(c @ c), float(d @ d)


def relative_error(reference: np.ndarray | Mapping[str, np.ndarray],
                   candidate: np.ndarray | Mapping[str, np.ndarray]) -> float:
    """The relative error of `candidate` against `reference`: two arrays, or two dicts of arrays by output name
    (then over all outputs together)."""
    if isinstance(reference, Mapping):
        sums = [_sums(reference[k], candidate[k]) for k in reference]
        return relative_error_of_sums(sum(s[3] for s in sums), sum(s[1] for s in sums))
    _, rr, _, dd = _sums(reference, candidate)
    return relative_error_of_sums(dd, rr)


def cosine(reference: np.ndarray, candidate: np.ndarray) -> float:
    """The cosine similarity of two arrays, flattened."""
    rc, rr, cc, dd = _sums(reference, candidate)
    return cosine_of_sums(rc, rr, cc, dd)


def top1_agreement(reference: np.ndarray, candidate: np.ndarray) -> float | None:
    """The share of samples whose top class is the same, for (batch, classes) outputs with 2 or more classes
    (None otherwise)."""
    if reference.ndim != 2 or reference.shape[1] < 2 or not len(reference):
        return None
    return float(np.mean(reference.argmax(1) == candidate.argmax(1)))
