"""Triton's classification extension: an output asked for with `"parameters": {"classification": k}` comes back as
each sample's top k classes, BYTES strings "score:index:label" (just "score:index" without labels), best first.
numpy only."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from dlkit_runtime.errors import InvalidInputError


def top_k_strings(scores: np.ndarray, k: int, labels: Sequence[str] | None = None, name: str = "scores"
                  ) -> np.ndarray:
    """The top `k` classes along the last axis of `scores`, as an object array of `bytes` whose last axis is k.

    Ties go to the lower index, as `dlkit_runtime.Model.classify` breaks them; the score is written with six
    decimals (C++'s std::to_string, as Triton does). `labels` name the classes when there is one per class.

    Raises:
        InvalidInputError: `scores` is not numeric or has no class axis.
    """
    if scores.ndim == 0 or scores.shape[-1] == 0 or scores.dtype.kind not in "biuf":
        raise InvalidInputError(f"output '{name}' is {scores.dtype} {list(scores.shape)}, not class scores; ask for "
                                "it without classification")
    classes = scores.shape[-1]
    k = min(int(k), classes)
    flat = scores.reshape(-1, classes)
    order = np.argsort(-flat.astype(np.float64), axis=1, kind="stable")[:, :k]
    named = labels is not None and len(labels) == classes
    out = np.empty(flat.shape[0] * k, dtype=object)
    out[:] = [(f"{float(row[i]):f}:{i}:{labels[i]}" if named else f"{float(row[i]):f}:{i}").encode()
              for row, idx in zip(flat, order) for i in idx]
    return out.reshape(scores.shape[:-1] + (k,))
