"""Tensor descriptions (the runtime's `TensorInfo`) and the `--input NAME:DTYPE[D0,...]` spec syntax."""

from __future__ import annotations

import re

import numpy as np

from dlkit.errors import InvalidInputError
from dlkit_runtime.tensors import Dim, TensorInfo

__all__ = ["Dim", "TensorInfo", "parse_input_spec", "parse_renames"]

_SPEC = re.compile(r"^(?P<name>[^:\[\]]+):(?P<dtype>[a-z0-9]+)\[(?P<dims>[^\]]*)\]$")


def parse_input_spec(text: str) -> TensorInfo:
    """Parses `NAME:DTYPE[D0,D1,...]`, where a dimension is an int or N, ? or a name for a dynamic axis.

    Example: `tokens:int32[N,100]`, `pixels:float32[1,28,28,1]`.

    Raises:
        InvalidInputError: the text does not follow that form.
    """
    match = _SPEC.match(text.strip())
    if not match:
        raise InvalidInputError(
            f"input spec {text!r} is not of the form NAME:DTYPE[D0,D1,...]; write e.g. 'tokens:int32[N,100]'"
        )
    dtype = match["dtype"]
    try:
        np.dtype(dtype)
    except TypeError:
        raise InvalidInputError(f"input spec {text!r} names an unknown dtype {dtype!r}; use e.g. float32 or int32") from None
    dims: list[Dim] = []
    for part in filter(None, (p.strip() for p in match["dims"].split(","))):
        if part.isdigit():
            dims.append(int(part))
        elif part in ("N", "?", "None", "-1"):
            dims.append(None)
        else:
            dims.append(part)
    return TensorInfo(match["name"], dtype, tuple(dims))


def parse_renames(pairs: list[str] | tuple[str, ...] | dict | None) -> dict[str, str]:
    """Turns `["old=new", ...]` (or a dict) into a mapping, rejecting malformed pairs."""
    if not pairs:
        return {}
    if isinstance(pairs, dict):
        return dict(pairs)
    out = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old or not new:
            raise InvalidInputError(f"rename {pair!r} is not of the form OLD=NEW; write e.g. 'output_0=logits'")
        out[old] = new
    return out
