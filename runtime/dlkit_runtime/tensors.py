"""Tensor descriptions of a loaded model: names, dtypes and shapes, read from onnxruntime's node args."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Dim = int | str | None  # an int is fixed, a str names a dynamic axis, None is an unnamed dynamic axis

# onnxruntime's type strings -> numpy dtype names
_ORT_TYPES = {
    "tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
    "tensor(int8)": "int8", "tensor(int16)": "int16", "tensor(int32)": "int32", "tensor(int64)": "int64",
    "tensor(uint8)": "uint8", "tensor(uint16)": "uint16", "tensor(uint32)": "uint32", "tensor(uint64)": "uint64",
    "tensor(bool)": "bool", "tensor(string)": "object",
}


@dataclass(frozen=True)
class TensorInfo:
    """One input or output of a model.

    Attributes:
        name: the tensor's name.
        dtype: numpy dtype name, e.g. "float32".
        shape: one entry per axis: an int for a fixed size, a string or None for a dynamic one.
    """

    name: str
    dtype: str
    shape: tuple[Dim, ...]

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    def shape_text(self) -> str:
        """The shape as users write it: `(N, 28, 28, 1)`, dynamic axes by name (N when unnamed)."""
        dims = ["N" if d is None else str(d) for d in self.shape]
        return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"

    def __str__(self) -> str:
        return f"{self.name}:{self.dtype}[{','.join('N' if d is None else str(d) for d in self.shape)}]"


def from_node_arg(arg) -> TensorInfo:
    """A `TensorInfo` from an onnxruntime `NodeArg` (`session.get_inputs()[i]`)."""
    dtype = _ORT_TYPES.get(arg.type, arg.type)
    shape = tuple(d if isinstance(d, int) and d >= 0 else (d or None) for d in (arg.shape or ()))
    return TensorInfo(arg.name, dtype, shape)


def sample_inputs(inputs, batch_size: int = 1, *, dynamic_size: int = 1, seed: int = 0, values: str = "normal",
                  int_high: int = 10) -> dict[str, np.ndarray]:
    """Random arrays that fit `inputs`: for smoke tests, benchmarks, profiling and parity checks (the one maker).

    Args:
        inputs: the model's `TensorInfo`s.
        batch_size: size of a dynamic first axis. Defaults to 1.
        dynamic_size: size of the other dynamic axes. Defaults to 1.
        seed: random seed. Defaults to 0.
        values: "normal": floats from N(0, 1), integers zero (a valid token id), booleans False; "uniform": floats
            uniform in [0, 1), integers in [0, int_high), booleans either. Defaults to "normal".
        int_high: the integers' bound with "uniform". Defaults to 10.

    Returns:
        A dict of arrays keyed by input name.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for info in inputs:
        shape = tuple(d if isinstance(d, int) else (batch_size if i == 0 else dynamic_size)
                      for i, d in enumerate(info.shape))
        dtype = np.dtype(info.dtype)
        if values == "uniform":
            out[info.name] = _uniform(rng, shape, dtype, int_high)
        elif dtype.kind == "f":
            out[info.name] = rng.standard_normal(shape).astype(dtype)
        else:
            out[info.name] = np.zeros(shape, dtype=dtype)
    return out


def _uniform(rng: np.random.Generator, shape: tuple, dtype: np.dtype, int_high: int) -> np.ndarray:
    if dtype.kind in "iu":
        return rng.integers(0, int_high, size=shape).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    return rng.random(shape, dtype=np.float64).astype(dtype)
