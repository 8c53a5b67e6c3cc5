"""Text over HTTP: a text model (one exported with its Keras `TextVectorization`, `Model.vectorizer` not None) takes
a BYTES input of N UTF-8 strings under its text input's name, shape [N] or [N, 1]: JSON strings, or in the binary
extension each element's 4-byte length and its bytes (tritonclient's np.object_ arrays). The server vectorizes them
with the model's own vectorizer (`dlkit_runtime.text`, Keras' token ids) and batches the ids like any request; token
ids sent as numbers skip this. The metadata and the Triton config advertise the text input as BYTES [-1]
(TYPE_STRING). Each element is checked before it is vectorized: over `Settings.max_text_bytes` (64 KiB) is a 413,
bytes that are not UTF-8 a 400 naming the element. Standard library and numpy.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from dlkit_runtime.errors import InvalidInputError
from dlkit_runtime.serving.protocol import RequestError, datatype
from dlkit_runtime.tensors import TensorInfo

# a request with less text than this is vectorized on the event loop (~0.7 ms on a 2-core EPYC: 200 lines of
# Tiny Shakespeare, 8 K characters, take 1.5 ms); more goes to a thread, so other requests are not held up
INLINE_CHARS = 4 * 1024


def text_vectorizers(model: Any) -> dict[str, Any]:
    """The model's text input name -> its vectorizer; empty for a model without one."""
    vectorizer = getattr(model, "vectorizer", None)
    if vectorizer is None or not any(i.name == vectorizer.input for i in model.inputs):
        return {}
    return {vectorizer.input: vectorizer}


def advertised_inputs(model: Any) -> list[TensorInfo]:
    """The model's inputs as clients send them: a text input is a string per sample, (N,) of dtype object (BYTES)."""
    texts = text_vectorizers(model)
    return [TensorInfo(i.name, "object", tuple(i.shape[:1])) if i.name in texts else i for i in model.inputs]


def token_inputs(model: Any) -> dict[str, dict]:
    """What the server turns each text input's strings into, and what a client may send instead: its datatype and
    shape as the metadata lists them (a dynamic axis is -1), for the metadata's parameters."""
    texts = text_vectorizers(model)
    return {i.name: {"datatype": datatype(i.dtype), "shape": [d if isinstance(d, int) else -1 for d in i.shape],
                     "vocabulary_size": len(texts[i.name].vocabulary)} for i in model.inputs if i.name in texts}


def text_chars(feeds: Mapping[str, np.ndarray], vectorizers: Mapping[str, Any]) -> int:
    """The length of the text the request holds for its text inputs (bytes or characters: a bound for the work)."""
    return sum(len(v) for name in vectorizers if name in feeds and feeds[name].dtype == object
               for v in feeds[name].reshape(-1))


def text_feeds(feeds: Mapping[str, np.ndarray], vectorizers: Mapping[str, Any], max_bytes: int) -> dict:
    """`feeds` with each text input's strings (an object array of `str` from JSON, or of `bytes` from binary data)
    checked and vectorized into the model's numeric input.

    Raises:
        RequestError: 413 for an element over `max_bytes`; 400 for bytes that are not UTF-8 (or a JSON string with a
            lone surrogate), or no strings at all.
    """
    out = dict(feeds)
    for name, vectorizer in vectorizers.items():
        values = feeds.get(name)
        if values is None or values.dtype != object:
            continue  # token ids, sent as numbers
        texts = [_text(v, name, i, max_bytes) for i, v in enumerate(values.reshape(-1))]
        if not texts:
            raise RequestError(400, f"input '{name}' holds no strings; send at least one")
        try:
            out[name] = vectorizer(texts)
        except InvalidInputError as err:
            raise RequestError(400, f"input '{name}': {err}") from None
    return out


def _text(value: Any, name: str, index: int, max_bytes: int) -> str:
    """One element as `str`, its UTF-8 size checked against `max_bytes` before anything else is done with it."""
    size = len(value)  # a str's characters are no more than its UTF-8 bytes: refused without encoding it
    if size <= max_bytes and isinstance(value, str):
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError as err:
            raise RequestError(400, f"input '{name}': string {index} is not valid UTF-8 (a lone surrogate at "
                                    f"character {err.start}); send UTF-8 text") from None
    if size > max_bytes:
        raise RequestError(413, f"input '{name}': string {index} is {size} bytes, over the server's limit of "
                                f"{max_bytes} bytes per string; split the text into shorter strings")
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RequestError(400, f"input '{name}': string {index} is not valid UTF-8 ({err.reason} at byte "
                                f"{err.start}); send each string UTF-8 encoded") from None
