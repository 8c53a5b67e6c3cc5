"""What a quantized model is judged by, in one place for `dlkit verify` and `dlkit quantize`: verify's default
thresholds, the sample size under which an accuracy drop is too uncertain to read alone, and the 95% interval it
is then shown with."""

from __future__ import annotations

MIN_AGREEMENT = 0.99  # the smallest top-1 agreement with the float model a candidate passes with
MAX_ACCURACY_DROP = 0.01  # the largest top-1 accuracy drop (0.01 = one point) a candidate passes with
SMALL_SAMPLE = 500  # fewer labelled samples than this: the accuracy drop is shown with its 95% interval
_Z95 = 1.959964


def wilson(successes: int, count: int, z: float = _Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion `successes / count` ((0, 1) without samples)."""
    if count <= 0:
        return 0.0, 1.0
    p = successes / count
    centre = (p + z * z / (2 * count)) / (1 + z * z / count)
    half = z / (1 + z * z / count) * (p * (1 - p) / count + z * z / (4 * count * count)) ** 0.5
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_drop_interval(both: int, reference_only: int, candidate_only: int, neither: int,
                         z: float = _Z95) -> tuple[float, float]:
    """The 95% interval of an accuracy drop (reference accuracy - candidate accuracy) when both models ran on the
    same samples: Newcombe's hybrid score interval for paired proportions (method 10 of Newcombe, Statistics in
    Medicine 17, 1998), built from the Wilson interval of each accuracy and the correlation of the pairs.

    Unlike the normal interval on the discordant pairs, it does not shrink to a point when no sample changed class
    (0 discordant pairs out of 300 is not proof that the drop is exactly 0).

    Args:
        both: samples both models classify right. reference_only: only the reference does (each lowers the
        candidate's accuracy). candidate_only: only the candidate does. neither: both are wrong.

    Returns:
        (low, high) bounds of the drop, as fractions (0.01 = one point).
    """
    count = both + reference_only + candidate_only + neither
    if count == 0:
        return -1.0, 1.0
    p1, p2 = (both + reference_only) / count, (both + candidate_only) / count
    l1, u1 = wilson(both + reference_only, count, z)
    l2, u2 = wilson(both + candidate_only, count, z)
    margins = ((both + reference_only) * (candidate_only + neither) * (both + candidate_only)
               * (reference_only + neither))
    phi = (both * neither - reference_only * candidate_only) / margins ** 0.5 if margins > 0 else 0.0
    drop = p1 - p2
    below = max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2) ** 0.5
    above = max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2) ** 0.5
    return max(-1.0, drop - below), min(1.0, drop + above)
