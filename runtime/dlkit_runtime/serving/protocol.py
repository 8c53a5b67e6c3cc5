"""The Open Inference Protocol's (KServe v2's) infer request and response, JSON and with the binary tensor data
extension that `tritonclient` uses by default: parsing and checking a request against a model's inputs before any
large allocation, and encoding the response. numpy and the standard library only; the server is `dlkit_runtime.serving`.

A request is JSON (`{"inputs": [{"name", "shape", "datatype", "data"}], "outputs": [...]}`), or, with the binary
extension, that JSON (its length in the `Inference-Header-Content-Length` header) followed by the raw bytes of the
inputs whose `parameters.binary_data_size` says how long they are, in order.

BYTES tensors: a JSON string per element, or in binary data each element's length (4 bytes, little-endian) and then
its bytes, as Triton writes them. A BYTES input for a numeric input holds one encoded sample (an image: see
`dlkit_runtime.serving.images_http`; a text model's string: `dlkit_runtime.serving.text_http`) per row, shape [N] or
[N, 1]. An output asked for with
`"parameters": {"classification": k}` comes back as its top k classes (Triton's classification extension).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import dataclass
from typing import Any, Collection, Mapping, Sequence

import numpy as np

from dlkit_runtime.serving import bytes_tensors
from dlkit_runtime.serving.classification import top_k_strings
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
    """A checked infer request: the input arrays by name (a BYTES input as an object array of `bytes`, or of `str`
    from JSON), the outputs asked for (name -> binary?) or None for all, whether outputs are binary by default, the
    request's id, and the outputs asked for as their top k classes (name -> k)."""

    inputs: Mapping[str, np.ndarray]
    outputs: Mapping[str, bool] | None
    binary_default: bool
    id: str | None
    classes: Mapping[str, int] = dataclasses.field(default_factory=dict)


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
          max_elements: int, texts: Collection[str] = ()) -> Request:
    """Checks and decodes an infer request for a model with `inputs` and `outputs`; the inputs named in `texts` are
    a text model's, which also take BYTES strings (left as they come, for `dlkit_runtime.serving.text_http`).

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
        if name not in wanted:
            raise RequestError(400, f"the model has no input '{name}'; its inputs are {sorted(wanted)}")
        if name in feeds:
            raise RequestError(400, f"input '{name}' is given twice")
        feeds[name], offset = _input(entry, wanted[name], binary, offset, max_elements, name in texts)
    missing = [n for n in wanted if n not in feeds]
    if missing:
        raise RequestError(400, f"the request is missing input(s) {missing}; the model takes {sorted(wanted)}")
    if offset != len(binary):
        raise RequestError(400, f"{len(binary) - offset} bytes of binary data follow the inputs that claim them")
    asked = request.get("outputs")
    params = request.get("parameters") if isinstance(request.get("parameters"), dict) else {}
    binary_default = bool(params.get("binary_data_output", False))
    chosen, classes = None, {}
    if asked is not None:
        if not isinstance(asked, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in asked):
            raise RequestError(400, "'outputs' must be a list of {name, parameters} objects")
        chosen, classes = {}, {}
        for out in asked:
            if out["name"] not in outputs:
                raise RequestError(400, f"the model has no output '{out['name']}'; its outputs are {list(outputs)}")
            p = out.get("parameters") if isinstance(out.get("parameters"), dict) else {}
            chosen[out["name"]] = bool(p.get("binary_data", binary_default))
            if p.get("classification", 0) != 0:
                classes[out["name"]] = _class_count(p["classification"], out["name"])
    rid = request.get("id")
    return Request(feeds, chosen, binary_default, rid if isinstance(rid, str) else None, classes)


def encode(model: str, values: Mapping[str, np.ndarray], request: Request,
           labels: Sequence[str] | None = None) -> tuple[bytes, dict[str, str]]:
    """The response body and headers: JSON, with the binary outputs' bytes after it when any are binary. An output
    asked for as classes is its top k "score:index:label" strings (`labels`: the model's, when it has them)."""
    chosen = request.outputs if request.outputs is not None else {n: request.binary_default for n in values}
    entries, blobs = [], []
    for name, binary in chosen.items():
        array = values[name]
        if name in request.classes:
            array = top_k_strings(array, request.classes[name], labels, name)
        array = np.ascontiguousarray(array)
        entry = {"name": name, "datatype": datatype(array.dtype), "shape": list(array.shape)}
        strings = array.dtype.kind in "OSU"
        if binary:
            raw = bytes_tensors.serialize(array) if strings else array.tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        elif strings:
            entry["data"] = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                             for v in array.reshape(-1)]
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


def _input(entry: Mapping[str, Any], info: TensorInfo, binary: memoryview, offset: int, max_elements: int,
           text: bool = False) -> tuple[np.ndarray, int]:
    """One input of the request, checked against the model's `info`, and the offset in the binary data after it."""
    name, kind = info.name, entry.get("datatype")
    params = entry.get("parameters") if isinstance(entry.get("parameters"), dict) else {}
    if kind == "BYTES":
        return _bytes_input(entry, info, params, binary, offset, max_elements, text)
    if text and (kind not in DATATYPES or np.dtype(DATATYPES[kind]) != np.dtype(info.dtype)):
        raise RequestError(400, f"input '{name}' takes BYTES [N] UTF-8 strings, or {datatype(info.dtype)} "
                                f"{info.shape_text()} token ids; got {kind!r}")
    shape = _shape(entry, info, max_elements)
    if kind not in DATATYPES:
        raise RequestError(400, f"input '{name}' has datatype {kind!r}; the model wants {datatype(info.dtype)}")
    dtype = np.dtype(DATATYPES[kind])
    if dtype != np.dtype(info.dtype):
        raise RequestError(400, f"input '{name}' wants {datatype(info.dtype)} {info.shape_text()}, got {kind} "
                                f"{list(shape)}")
    if "binary_data_size" not in params:
        return _from_json(entry.get("data"), shape, dtype, name), offset
    length = params["binary_data_size"]
    if not isinstance(length, int) or length != math.prod(shape) * dtype.itemsize:
        raise RequestError(400, f"input '{name}': binary_data_size {length!r} is not {math.prod(shape)} "
                                f"{kind} values ({math.prod(shape) * dtype.itemsize} bytes)")
    if offset + length > len(binary):
        raise RequestError(400, f"input '{name}': the body ends before its {length} bytes of binary data")
    return np.frombuffer(binary[offset:offset + length], dtype=dtype).reshape(shape), offset + length


def _bytes_input(entry: Mapping[str, Any], info: TensorInfo, params: Mapping[str, Any], binary: memoryview,
                 offset: int, max_elements: int, text: bool = False) -> tuple[np.ndarray, int]:
    """A BYTES input: for a string input, shaped as the model says; for a numeric one, one encoded sample per row
    (a picture, or for a text model's input a string)."""
    name, shape = info.name, entry.get("shape")
    if np.dtype(info.dtype).kind in "OSU":
        shape = _shape(entry, info, max_elements)
    elif not isinstance(shape, list) or len(shape) not in (1, 2) or shape[1:] not in ([], [1]) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise RequestError(400, f"input '{name}' takes {datatype(info.dtype)} {info.shape_text()}, or BYTES of shape "
                                f"[N] or [N, 1] holding N {'UTF-8 strings' if text else 'encoded images'}; got "
                                f"BYTES shape {shape!r}")
    count = math.prod(shape)
    if count > max_elements:
        raise RequestError(400, f"input '{name}' has {count} elements, more than the server's limit of {max_elements}")
    if "binary_data_size" in params:
        length = params["binary_data_size"]
        if not isinstance(length, int) or length < 0 or offset + length > len(binary):
            raise RequestError(400, f"input '{name}': binary_data_size {length!r} is not within the body's "
                                    f"{len(binary) - offset} bytes of binary data left")
        try:
            values = bytes_tensors.deserialize(binary[offset:offset + length], count)
        except ValueError as err:
            raise RequestError(400, f"input '{name}': {err}") from None
        offset += length
    else:
        data = entry.get("data")
        values = _flat(data) if isinstance(data, list) else None
        if values is None or not all(isinstance(v, str) for v in values):
            raise RequestError(400, f"input '{name}' needs 'data' as a list of strings ("
                                    f"{'the texts' if text else 'base64 for images'}) or binary data")
        if len(values) != count:
            raise RequestError(400, f"input '{name}' has {len(values)} strings for shape {list(shape)}")
    array = np.empty(count, dtype=object)
    array[:] = values
    return array.reshape(shape), offset


def _flat(data: list) -> list | None:
    """The leaves of nested lists, in order (their depth is bounded by the request's)."""
    if not any(isinstance(v, list) for v in data):
        return data
    out = []
    for v in data:
        out.extend(_flat(v) if isinstance(v, list) else [v])
    return out


def _class_count(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise RequestError(400, f"output '{name}': classification {value!r} is not a positive integer (the k of the "
                                "top k classes)")
    return value


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
