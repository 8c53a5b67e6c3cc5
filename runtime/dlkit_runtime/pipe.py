"""Models answered over a pipe: the process dlkit starts on an emulated device (`python -m dlkit_runtime.pipe` under
qemu) and talks to through its standard input and output.

A message is one line of JSON, then the `.npy` bytes of each array it lists under "arrays" (`[name, size]` pairs),
back to back. Arrays are written and read by `numpy.save`/`numpy.load` with `allow_pickle=False`: no pickle either
way. The worker answers each request with one message, in order:

    {"op": "hello"}                         -> the device: CPU kind, onnxruntime version and providers, Python
    {"op": "load", "path": P, "threads": T} -> {"id": N, "inputs": [...], "outputs": [...], "metadata": {...},
                                                "providers": [...]}
    {"op": "predict", "id": N} + arrays     -> the outputs, as arrays (`Model.predict`)
    {"op": "unload", "id": N}               -> {}

A failed request is answered `{"error": MESSAGE, "type": CLASS}` and the worker goes on; end of input ends it.
Everything the worker or onnxruntime prints goes to standard error, never into the replies.
"""

from __future__ import annotations

import io
import json
import os
import sys
from typing import Any, BinaryIO, Mapping

import numpy as np

_MAX_HEADER = 1 << 20  # bytes of one JSON line


def write(stream: BinaryIO, header: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | None = None) -> None:
    """Writes one message: `header` as a JSON line, then `arrays` as .npy bytes."""
    blobs = []
    for name, value in (arrays or {}).items():
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(value), allow_pickle=False)
        blobs.append((name, buffer.getvalue()))
    line = json.dumps({**header, "arrays": [[name, len(blob)] for name, blob in blobs]}) + "\n"
    stream.write(line.encode())
    for _, blob in blobs:
        stream.write(blob)
    stream.flush()


def read(stream: BinaryIO) -> tuple[dict, dict[str, np.ndarray]] | None:
    """Reads one message, or None at the end of the stream.

    Raises:
        ValueError: the stream does not hold a message (a broken line or a short array).
    """
    line = stream.readline(_MAX_HEADER)
    if not line:
        return None
    if not line.endswith(b"\n"):
        raise ValueError("a message's header line is cut short or longer than 1 MB")
    header = json.loads(line)
    arrays = {}
    for name, size in header.pop("arrays", []):
        blob = stream.read(size)
        if len(blob) != size:
            raise ValueError(f"array '{name}' is cut short: {len(blob)} of {size} bytes")
        arrays[name] = np.load(io.BytesIO(blob), allow_pickle=False)
    return header, arrays


def serve(requests: BinaryIO, replies: BinaryIO) -> None:
    """Answers requests until the end of `requests`."""
    from dlkit_runtime.errors import DlkitError

    models: dict[int, Any] = {}
    while True:
        message = read(requests)
        if message is None:
            return
        header, arrays = message
        try:
            reply, out = _answer(header, arrays, models)
        except DlkitError as err:
            reply, out = {"error": str(err), "type": type(err).__name__}, None
        except Exception as err:  # reported to the host, which raises it; the worker stays up
            reply, out = {"error": f"{type(err).__name__}: {err}", "type": "DlkitError"}, None
        write(replies, reply, out)


def _answer(header: dict, arrays: dict, models: dict) -> tuple[dict, dict | None]:
    op = header.get("op")
    if op == "predict":
        model = models[header["id"]]
        return {}, model.predict(arrays, cast=bool(header.get("cast")))
    if op == "load":
        from dlkit_runtime import Model

        model = Model(header["path"], threads=header.get("threads"))
        number = max(models, default=-1) + 1
        models[number] = model
        return {"id": number, "inputs": [i.to_dict() for i in model.inputs],
                "outputs": [o.to_dict() for o in model.outputs], "metadata": model.metadata,
                "providers": list(model.providers)}, None
    if op == "unload":
        models.pop(header["id"], None)
        return {}, None
    if op == "hello":
        import platform

        import onnxruntime

        from dlkit_runtime import cpu

        return {"cpu": cpu.host().to_dict(), "onnxruntime": onnxruntime.__version__,
                "providers": list(onnxruntime.get_available_providers()), "python": platform.python_version(),
                "machine": platform.machine(), "numpy": np.__version__}, None
    raise ValueError(f"unknown request {op!r}")


def main() -> None:
    requests, replies = sys.stdin.buffer, os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # prints (onnxruntime's among them) go to stderr
    sys.stdout = sys.stderr
    try:
        serve(requests, replies)
    except (BrokenPipeError, KeyboardInterrupt):
        pass


if __name__ == "__main__":
    main()
