"""Helpers for users' own test suites: the check `dlkit verify` makes, as a pytest-friendly assertion."""

from __future__ import annotations

import os
from typing import Any, Sequence

from dlkit.core import judging


def assert_parity(
    reference: Any,
    candidates: str | os.PathLike | Sequence[str | os.PathLike],
    data: str | os.PathLike | None = None,
    *,
    random: int | None = None,
    atol: float | None = None,
    min_agreement: float | None = judging.MIN_AGREEMENT,
    max_accuracy_drop: float | None = judging.MAX_ACCURACY_DROP,
    **options: Any,
):
    """Asserts that ONNX candidates agree with a reference model within the thresholds.

    Args:
        reference: a Keras model (file, SavedModel folder or `keras.Model`) or an `.onnx` file.
        candidates: one or more `.onnx` files.
        data: `.npy`, `.npz` (labels under `y`) or an image folder. random: or this many random samples.
        atol: largest absolute error allowed. Defaults to None: not checked.
        min_agreement: smallest top-1 agreement allowed for classifiers. Defaults to 0.99.
        max_accuracy_drop: largest top-1 accuracy drop allowed with labels. Defaults to 0.01.
        **options: passed on to `dlkit.verify` (`max_samples`, `batch_size`, `report`, ...).

    Returns:
        The `VerifyResult`, for further assertions.

    Raises:
        AssertionError: a figure is outside its threshold; the message names each figure and by how much.
        InvalidInputError, ShapeMismatchError: as `dlkit.verify` (bad input is not a failed check).

    Example:
        >>> from dlkit.testing import assert_parity
        >>> def test_int8_model_is_shippable():
        ...     assert_parity("cnn.keras", "cnn.int8.onnx", "mnist_test.npz", max_accuracy_drop=0.005)
    """
    from dlkit.verification.pipeline import verify

    __tracebackhide__ = True  # pytest shows the caller's line, not this one
    result = verify(reference, candidates, data, random=random, atol=atol, min_agreement=min_agreement,
                    max_accuracy_drop=max_accuracy_drop, **options)
    if not result.passed:
        lines = "\n".join(f"  - {b.message}" for b in result.breaches)
        raise AssertionError(f"parity with {result.reference} failed on {result.num_samples} samples "
                             f"({result.data}):\n{lines}")
    return result
