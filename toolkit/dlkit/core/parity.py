"""Comparing two models' outputs as numbers: the check behind every export.

Pure numpy: the figures are the same whichever models produced the arrays.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping

import numpy as np

from dlkit.core.figures import cosine
from dlkit.errors import InvalidInputError, ShapeMismatchError
from dlkit.core.tensors import TensorInfo
from dlkit_runtime.checks import check_inputs
from dlkit_runtime.tensors import sample_inputs

DEFAULT_DYNAMIC_SIZE = 16  # the length given to a dynamic non-batch axis (a sequence) in random samples


@dataclass(frozen=True)
class OutputParity:
    """How far one output of a candidate model is from the reference, over all samples.

    Attributes:
        name: the output's name.
        max_abs_error: largest absolute difference of any element.
        mean_abs_error: mean absolute difference.
        cosine_similarity: cosine of the angle between the flattened outputs (1.0 is identical direction).
    """

    name: str
    max_abs_error: float
    mean_abs_error: float
    cosine_similarity: float

    def to_dict(self) -> dict:
        return asdict(self)


def compare(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray]) -> tuple[OutputParity, ...]:
    """Figures per output; outputs are matched by name.

    Raises:
        ShapeMismatchError: the names or shapes of the outputs differ.
    """
    if set(reference) != set(candidate):
        raise ShapeMismatchError(
            f"outputs differ: reference has {sorted(reference)}, candidate has {sorted(candidate)}"
        )
    figures = []
    for name, ref in reference.items():
        got = candidate[name]
        if ref.shape != got.shape:
            raise ShapeMismatchError(f"output '{name}' has shape {got.shape} in the candidate, {ref.shape} in the reference")
        diff = np.abs(ref.astype(np.float64) - got.astype(np.float64))
        figures.append(OutputParity(
            name,
            float(diff.max()) if diff.size else 0.0,
            float(diff.mean()) if diff.size else 0.0,
            cosine(ref, got),
        ))
    return tuple(figures)


def random_inputs(
    inputs: tuple[TensorInfo, ...], count: int, *, int_high: int = 10, seed: int = 0
) -> dict[str, np.ndarray]:
    """Random samples in each input's dtype: floats uniform in [0, 1), integers in [0, int_high).

    Dynamic axes get `count` for the batch and `DEFAULT_DYNAMIC_SIZE` elsewhere, or twice that when `count`
    equals it: a graph that mixes up the batch axis with another one must not pass because both had one size.
    """
    other = DEFAULT_DYNAMIC_SIZE if count != DEFAULT_DYNAMIC_SIZE else 2 * DEFAULT_DYNAMIC_SIZE
    return sample_inputs(inputs, count, dynamic_size=other, seed=seed, values="uniform", int_high=int_high)


def fit_array(array: np.ndarray, info: TensorInfo, *, source: str) -> np.ndarray:
    """Checks rank, fixed axes and dtype of `array` for `info` with the runtime's checks; casts within a kind
    (float64 -> float32), as sample files saved by numpy need.

    Raises:
        InvalidInputError: the array does not fit; the message names the input, both shapes, the fix and `source`.
    """
    same_kind = bool(np.can_cast(array.dtype, np.dtype(info.dtype), casting="same_kind"))
    try:
        return check_inputs({info.name: array}, [info], cast=same_kind)[info.name]
    except InvalidInputError as err:
        raise InvalidInputError(f"{err} (in {source})") from None
