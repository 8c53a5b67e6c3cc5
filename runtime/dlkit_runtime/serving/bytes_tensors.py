"""BYTES tensors in the binary tensor data extension, as Triton writes them: each element's length (4 bytes,
little-endian), then its bytes. Standard library and numpy."""

from __future__ import annotations

import numpy as np


def serialize(array: np.ndarray) -> bytes:
    """An array of `bytes` or `str` (UTF-8) elements, flattened in C order, in Triton's binary form."""
    parts = []
    for value in array.reshape(-1):
        raw = value if isinstance(value, bytes) else str(value).encode()
        parts += [len(raw).to_bytes(4, "little"), raw]
    return b"".join(parts)


def deserialize(data: memoryview | bytes, count: int) -> list[bytes]:
    """The `count` elements of Triton's binary form.

    Raises:
        ValueError: the data end inside an element, or hold another number of elements than `count`.
    """
    values, pos = [], 0
    while pos < len(data):
        if pos + 4 > len(data):
            raise ValueError("its BYTES data end inside an element's 4-byte length")
        size = int.from_bytes(data[pos:pos + 4], "little")
        if pos + 4 + size > len(data):
            raise ValueError(f"a BYTES element says {size} bytes, past the end of its data")
        values.append(bytes(data[pos + 4:pos + 4 + size]))
        pos += 4 + size
        if len(values) > count:
            break
    if len(values) != count:
        raise ValueError(f"its BYTES data hold {'more than ' if len(values) > count else ''}{len(values)} "
                         f"element(s) where its shape has {count}")
    return values
