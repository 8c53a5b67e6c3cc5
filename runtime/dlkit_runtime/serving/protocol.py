"""The Open Inference Protocol's (KServe v2's) infer request and response, JSON and with the binary tensor data
extension that `tritonclient` uses by default: parsing and checking a request against a model's inputs before any
large allocation, and encoding the response. numpy and the standard library only; the server is `dlkit_runtime.serving`.

A request is JSON (`{"inputs": [{"name", "shape", "datatype", "data"}], "outputs": [...]}`), or, with the binary
extension, that JSON (its length in the `Inference-Header-Content-Length` header) followed by the raw bytes of the
inputs whose `parameters.binary_data_size` says how long they are, in order.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from dlkit_runtime.tensors import TensorInfo

DATATYPES = {"BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
             "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64", "FP16": "float16",
             "FP32": "float32", "FP64": "float64"}
_NAMES = {v: k for k, v in DATATYPES.items()}
MAX_DEPTH = 64  # JSON nesting a request may have (a tensor's nested lists included)


class RequestError(Exception):
    """A request the server answers with `status` and `{"error": message}`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Request:
    """A checked infer request: the input arrays by name, the outputs asked for (name -> binary?) or None for all,
    whether outputs are binary by default, and the request's id."""

    inputs: Mapping[str, np.ndarray]
    outputs: Mapping[str, bool] | None
    binary_default: bool
    id: str | None


def loads(data: bytes) -> Any:
    """JSON to Python, through orjson when it is installed (the serve extra has it: it reads a tensor's numbers
    about eight times faster than the standard library, which under load is most of a request's cost)."""
    return _codec()[0](data)


def dumps(value: Any) -> bytes:
    return _codec()[1](value)


@functools.lru_cache(maxsize=None)
def _codec():
    try:
        import orjson
    except ImportError:
        return json.loads, lambda value: json.dumps(value).encode()
    return orjson.loads, orjson.dumps


def datatype(dtype: Any) -> str:
    try:
        return _datatype(dtype)  # np.dtype() per call costs microseconds per tensor
    except TypeError:  # unhashable
        return _NAMES.get(np.dtype(dtype).name, "BYTES")


@functools.lru_cache(maxsize=64)
def _datatype(dtype: Any) -> str:
    return _NAMES.get(np.dtype(dtype).name, "BYTES")


def parse(body: bytes, header_length: str | None, inputs: Sequence[TensorInfo], outputs: Sequence[str],
          max_elements: int) -> Request:
    """Checks and decodes an infer request for a model with `inputs` and `outputs`.

    Raises:
        RequestError: 400 for anything malformed or not fitting the model, naming the input, the expected and the
            given shape and datatype.
    """
    if header_length is not None:
        try:
            size = int(header_length)
        except ValueError:
            raise RequestError(400, f"Inference-Header-Content-Length {header_length!r} is not a number") from None
        if not 0 < size <= len(body):
            raise RequestError(400, f"Inference-Header-Content-Length {size} is outside the body ({len(body)} bytes)")
        head, binary = body[:size], memoryview(body)[size:]
    else:
        head, binary = body, memoryview(b"")
    try:
        _check_depth(bytes(head))
        request = loads(head)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise RequestError(400, f"the request is not valid JSON ({type(err).__name__}: {str(err)[:120]})") from None
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list) or not request["inputs"]:
        raise RequestError(400, "the request needs an 'inputs' list of {name, shape, datatype, data} objects")
    wanted = {i.name: i for i in inputs}
    feeds, offset = {}, 0
    for entry in request["inputs"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise RequestError(400, "each input needs a 'name', a 'shape', a 'datatype' and 'data' (or binary data)")
        name = entry["name"]
        info = wanted.get(name)
        if info is None:
            raise RequestError(400, f"the model has no input '{name}'; its inputs are {sorted(wanted)}")
        if name in feeds:
            raise RequestError(400, f"input '{name}' is given twice")
        shape = _shape(entry, info, max_elements)
        kind = entry.get("datatype")
        if kind not in DATATYPES:
            raise RequestError(400, f"input '{name}' has datatype {kind!r}; the model wants {datatype(info.dtype)}")
        dtype = np.dtype(DATATYPES[kind])
        if dtype != np.dtype(info.dtype):
            raise RequestError(400, f"input '{name}' wants {datatype(info.dtype)} {info.shape_text()}, got {kind} "
                                    f"{list(shape)}")
        params = entry.get("parameters") if isinstance(entry.get("parameters"), dict) else {}
        if "binary_data_size" in params:
            length = params["binary_data_size"]
            if not isinstance(length, int) or length != math.prod(shape) * dtype.itemsize:
                raise RequestError(400, f"input '{name}': binary_data_size {length!r} is not {math.prod(shape)} "
                                        f"{kind} values ({math.prod(shape) * dtype.itemsize} bytes)")
            if offset + length > len(binary):
                raise RequestError(400, f"input '{name}': the body ends before its {length} bytes of binary data")
            array = np.frombuffer(binary[offset:offset + length], dtype=dtype).reshape(shape)
            offset += length
        else:
            array = _from_json(entry.get("data"), shape, dtype, name)
        feeds[name] = array
    missing = [n for n in wanted if n not in feeds]
    if missing:
        raise RequestError(400, f"the request is missing input(s) {missing}; the model takes {sorted(wanted)}")
    if offset != len(binary):
        raise RequestError(400, f"{len(binary) - offset} bytes of binary data follow the inputs that claim them")
    asked = request.get("outputs")
    params = request.get("parameters") if isinstance(request.get("parameters"), dict) else {}
    binary_default = bool(params.get("binary_data_output", False))
    chosen = None
    if asked is not None:
        if not isinstance(asked, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in asked):
            raise RequestError(400, "'outputs' must be a list of {name, parameters} objects")
        chosen = {}
        for out in asked:
            if out["name"] not in outputs:
                raise RequestError(400, f"the model has no output '{out['name']}'; its outputs are {list(outputs)}")
            p = out.get("parameters") if isinstance(out.get("parameters"), dict) else {}
            chosen[out["name"]] = bool(p.get("binary_data", binary_default))
    rid = request.get("id")
    return Request(feeds, chosen, binary_default, rid if isinstance(rid, str) else None)


def encode(model: str, values: Mapping[str, np.ndarray], request: Request) -> tuple[bytes, dict[str, str]]:
    """The response body and headers: JSON, with the binary outputs' bytes after it when any are binary."""
    chosen = request.outputs if request.outputs is not None else {n: request.binary_default for n in values}
    entries, blobs = [], []
    for name, binary in chosen.items():
        array = np.ascontiguousarray(values[name])
        entry = {"name": name, "datatype": datatype(array.dtype), "shape": list(array.shape)}
        if binary:
            raw = array.tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = array.reshape(-1).tolist()
        entries.append(entry)
    response = {"model_name": model, "outputs": entries}
    if request.id is not None:
        response["id"] = request.id
    head = dumps(response)
    if not blobs:
        return head, {"content-type": "application/json"}
    return head + b"".join(blobs), {"content-type": "application/octet-stream",
                                     "inference-header-content-length": str(len(head))}


_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _check_depth(head: bytes) -> None:
    """Refuses JSON nested deeper than MAX_DEPTH before the parser recurses into it (brackets inside strings count
    too: a bound, not a parser). The other bytes are dropped in C first, so a flat tensor costs next to nothing."""
    depth = 0
    for char in head.translate(None, _NOT_BRACKETS):
        if char in (91, 123):  # [ {
            depth += 1
            if depth > MAX_DEPTH:
                raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
        else:
            depth -= 1


def _shape(entry: Mapping[str, Any], info: TensorInfo, max_elements: int) -> tuple[int, ...]:
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise RequestError(400, f"input '{info.name}' needs a 'shape' of non-negative integers, got {shape!r}")
    want = info.shape_text()
    if len(shape) != len(info.shape) or any(isinstance(d, int) and d != s for d, s in zip(info.shape, shape)):
        raise RequestError(400, f"input '{info.name}' wants {datatype(info.dtype)} {want}, got shape {shape}")
    if math.prod(shape) > max_elements:
        raise RequestError(400, f"input '{info.name}' has {math.prod(shape)} elements, more than the server's limit "
                                f"of {max_elements}")
    return tuple(shape)


def _from_json(data: Any, shape: tuple[int, ...], dtype: np.dtype, name: str) -> np.ndarray:
    if not isinstance(data, list):
        raise RequestError(400, f"input '{name}' has no 'data' list (nor binary_data_size parameters)")
    flat = data if all(not isinstance(v, list) for v in data[:1]) else None
    try:
        array = np.asarray(flat if flat is not None else data, dtype=dtype)
    except (ValueError, TypeError, OverflowError) as err:
        raise RequestError(400, f"input '{name}': its data are not {datatype(dtype)} values ({err})") from None
    if array.size != math.prod(shape):
        raise RequestError(400, f"input '{name}' has {array.size} values for shape {list(shape)} "
                                f"({math.prod(shape)} values)")
    return array.reshape(shape)


__all__ = ["DATATYPES", "Request", "RequestError", "datatype", "dumps", "encode", "loads", "parse"]
