"""Input checks before a run: names, rank, fixed dimensions and dtype, with errors that say how to fix them.

Casting happens only when it loses nothing (`uint8` -> `float32`, `int32` -> `int64`) or when asked (`cast=True`).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from dlkit_runtime.errors import InvalidInputError
from dlkit_runtime.tensors import TensorInfo


class InputChecker:
    """Checks inputs against a model's `TensorInfo`s; what is fixed is worked out once, for a fast common path.

    Args:
        inputs: the model's inputs.
    """

    def __init__(self, inputs: Sequence[TensorInfo]):
        self.inputs = tuple(inputs)
        self._by_name = {info.name: info for info in self.inputs}
        # name -> (dtype, rank, ((axis, size), ...) of the fixed axes)
        self._fast = {i.name: (np.dtype(i.dtype), len(i.shape), tuple((a, d) for a, d in enumerate(i.shape)
                                                                      if isinstance(d, int)))
                      for i in self.inputs}
        self._single = self.inputs[0].name if len(self.inputs) == 1 else None

    def __call__(self, x: Any, *, cast: bool = False) -> dict[str, np.ndarray]:
        """Turns what the user passed into the feed dict onnxruntime wants, or explains what is wrong.

        Args:
            x: one array (a model with one input) or a dict of arrays keyed by input name.
            cast: cast to the model's dtypes even when it loses precision (float64 -> float32). Defaults to False.

        Returns:
            A dict of contiguous arrays keyed by input name.

        Raises:
            InvalidInputError: a missing or unknown name, a wrong rank, fixed dimension or dtype.
        """
        if type(x) is np.ndarray and self._single is not None and self._ready(self._single, x):
            return {self._single: x}  # the commonest call, in about 0.3 us (isinstance on Mapping alone is 0.2)
        if type(x) is dict or isinstance(x, Mapping):
            if (x.keys() if type(x) is dict else set(x)) != self._by_name.keys():
                self._name_error(x)
            given = x
        elif self._single is None:
            raise InvalidInputError(f"the model has {len(self.inputs)} inputs ({_names(self.inputs)}); pass a dict "
                                    "of arrays keyed by input name")
        else:
            given = {self._single: x}
        feed = {}
        for name, value in given.items():
            feed[name] = value if self._ready(name, value) else _check_one(value, self._by_name[name], cast)
        return feed

    def _ready(self, name: str, value: Any) -> bool:
        """True when `value` can go to onnxruntime as it is: an ndarray of the right dtype, rank and fixed
        dimensions, C-contiguous."""
        dtype, rank, fixed = self._fast[name]
        if type(value) is not np.ndarray or value.dtype != dtype or value.ndim != rank or not value.flags.c_contiguous:
            return False
        shape = value.shape
        for axis, size in fixed:
            if shape[axis] != size:
                return False
        return True

    def _name_error(self, given: Mapping[str, Any]) -> None:
        missing = [n for n in self._by_name if n not in given]
        unknown = [n for n in given if n not in self._by_name]
        if unknown:
            raise InvalidInputError(f"unknown input name(s) {', '.join(map(repr, unknown))}; the model's inputs are "
                                    f"{_names(self.inputs)}")
        raise InvalidInputError(f"missing input(s) {', '.join(map(repr, missing))}; the model's inputs are "
                                f"{_names(self.inputs)} and you gave {', '.join(map(repr, given)) or 'none'}")


def check_inputs(x: Any, inputs: Sequence[TensorInfo], *, cast: bool = False) -> dict[str, np.ndarray]:
    """`InputChecker(inputs)(x, cast=cast)`, for one call."""
    return InputChecker(inputs)(x, cast=cast)


def _check_one(value: Any, info: TensorInfo, cast: bool) -> np.ndarray:
    array = np.asarray(value)
    want = np.dtype(info.dtype)
    got = f"got {array.dtype} {tuple(array.shape)}"
    expected = f"input '{info.name}' wants {info.dtype} {info.shape_text()}"
    if array.ndim != len(info.shape):
        raise InvalidInputError(f"{expected}, {got}; {_rank_fix(array, info)}")
    for axis, (dim, size) in enumerate(zip(info.shape, array.shape)):
        if isinstance(dim, int) and dim != size:
            raise InvalidInputError(f"{expected}, {got}: axis {axis} must be {dim}; reshape or resize it")
    if array.dtype != want:
        if not (cast or _lossless(array.dtype, want)):
            raise InvalidInputError(f"{expected}, {got}: {array.dtype} -> {info.dtype} can lose values; cast it "
                                    f"(x.astype('{info.dtype}')) or pass cast=True")
        array = array.astype(want)
    return np.ascontiguousarray(array)


def _lossless(src: np.dtype, dst: np.dtype) -> bool:
    if src.kind == "b" and dst.kind != "b":  # bool -> numbers: numpy calls it safe, a model rarely means it
        return False
    return bool(np.can_cast(src, dst, casting="safe"))


def _rank_fix(array: np.ndarray, info: TensorInfo) -> str:
    rank = len(info.shape)
    if array.ndim == rank - 1 and _fits(array.shape, info.shape[1:]):
        return "add a batch axis: x[None]"
    if array.ndim == rank + 1 and array.shape[0] == 1 and _fits(array.shape[1:], info.shape):
        return "drop the leading axis: x[0]"
    if array.ndim == rank - 1 and info.shape[-1] == 1 and _fits(array.shape, info.shape[:-1]):
        return "add a channel axis: x[..., None]"
    if array.ndim == rank - 2 and info.shape[-1] == 1 and _fits(array.shape, info.shape[1:-1]):
        return "add a batch and a channel axis: x[None, ..., None]"
    return f"reshape it to rank {rank}"


def _fits(shape: Sequence[int], dims: Sequence[Any]) -> bool:
    return len(shape) == len(dims) and all(not isinstance(d, int) or d == s for d, s in zip(dims, shape))


def _names(inputs: Sequence[TensorInfo]) -> str:
    return ", ".join(repr(i.name) for i in inputs)
