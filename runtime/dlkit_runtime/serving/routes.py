"""The server's handlers: POST /v2/models/{name}/infer as a bare ASGI handler (the one path under load: no routing,
request or response objects per call), and starlette's routes for the rest of the Open Inference Protocol (health,
server and model metadata, Triton's model configuration) and /metrics. Every model path also answers under
/versions/1 (a model has that one version). starlette (the `serve` extra) is imported only when the routes are built.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable

import numpy as np

from dlkit_runtime.errors import InvalidInputError, MissingDependencyError
from dlkit_runtime.serving.batching import INLINE_SECONDS, Batcher, Entry, rows_of
from dlkit_runtime.serving.images_http import image_feeds, image_request
from dlkit_runtime.serving.metrics import CONTENT_TYPE, Metrics
from dlkit_runtime.serving.model_config import model_config
from dlkit_runtime.serving.protocol import Request, RequestError, datatype, dumps, encode, parse
from dlkit_runtime.serving.settings import Settings
from dlkit_runtime.serving.text_http import (INLINE_CHARS, advertised_inputs, text_chars, text_feeds,
                                             text_vectorizers, token_inputs)


def infer_handler(entries: dict[str, Entry], recorder: Metrics, settings: Settings):
    """The handler of POST /v2/models/{name}/infer, `infer(scope, receive, send, name, started_at, version=None)`,
    which returns the status sent. A model's batcher starts with its first request; a fast model with nothing waiting
    runs at once on the event loop, a request larger than `max_batch` alone in a thread, the rest through the
    batcher. Pictures (a BYTES input, or an image/* body) are decoded in a thread first."""
    batchers: dict[str, Batcher] = {}
    limit = int(settings.max_body_mb * (1 << 20))

    async def infer(scope, receive, send, name: str, started_at: float, version: str | None = None) -> int:
        """POST /v2/models/{name}/infer as a bare ASGI handler, the one path under load: no routing, request or
        response objects per call (starlette serves the rest). Returns the status sent. The metrics count the
        request before its last byte goes out: a client that has its answer finds it counted."""
        def record(code: int) -> None:
            recorder.request(name, code, time.perf_counter() - started_at)

        try:
            entry = entries.get(name)
            if entry is None:
                raise RequestError(404, f"no model '{name}' here; the models are {sorted(entries)}")
            if version not in (None, "1"):
                raise RequestError(404, _no_version(name, version))
            entry.arriving += 1  # on the way while it is read, parsed and its pictures decoded, refused or not
            try:
                declared = length = kind = None
                for key, value in scope["headers"]:
                    if key == b"content-length":
                        declared = value
                    elif key == b"inference-header-content-length":
                        length = value.decode("latin-1")
                    elif key == b"content-type":
                        kind = value.decode("latin-1").split(";")[0].strip().lower()
                body = await _read_body(receive, declared, limit, settings.max_body_mb)
                feeds, parsed = await _request(entry, body, length, kind, scope.get("query_string", b""), settings)
            finally:
                entry.arriving -= 1
            if entry.name not in batchers:
                batchers[entry.name] = Batcher(entry, settings)
                asyncio.get_running_loop().create_task(batchers[entry.name].run())
            if entry.seconds < INLINE_SECONDS and not entry.busy and entry.queue.empty():
                outputs = entry.predict(feeds)  # fast and nothing waiting: at once, on the loop (no batch to wait for)
            elif entry.batched and rows_of(feeds) > settings.max_batch:  # too big to share a batch: run it alone
                outputs = await asyncio.get_running_loop().run_in_executor(None, entry.predict, feeds)
            else:
                outputs = await batchers[entry.name].submit(feeds)
            content, headers = encode(entry.name, outputs, parsed, entry.model.labels)
        except RequestError as err:
            return await send_error(send, err.status, err.message, record)
        except InvalidInputError as err:
            return await send_error(send, 400, str(err), record)
        except _Disconnected:
            record(499)
            return 499  # nobody to answer (nginx's code for it, in the log and metrics only)
        return await _respond(send, 200, content, [(k.encode(), v.encode()) for k, v in headers.items()], record)

    return infer


async def _request(entry: Entry, body: bytes, length: str | None, kind: str | None, query: bytes,
                   settings: Settings) -> tuple[dict, Request]:
    """The request's feeds, ready to run, and the request: JSON or binary tensors, or one picture as the body (an
    image/* Content-Type). A text model's strings become its token ids (in a thread when there is much text);
    encoded pictures are decoded in a thread, after their limits are checked."""
    model = entry.model
    outputs, texts = [o.name for o in model.outputs], text_vectorizers(model)
    if kind is not None and kind.startswith("image/"):
        parsed = image_request(body, kind, query, model.inputs, outputs)
    else:
        parsed = parse(body, length, model.inputs, outputs, settings.max_elements, texts)
    feeds = parsed.inputs
    if texts and any(v.dtype == object for v in feeds.values()):  # strings for a text model: its token ids
        if text_chars(feeds, texts) <= INLINE_CHARS:
            feeds = text_feeds(feeds, texts, settings.max_text_bytes)
        else:
            feeds = await asyncio.get_running_loop().run_in_executor(
                None, text_feeds, feeds, texts, settings.max_text_bytes)
    if any(v.dtype == object for v in feeds.values()):
        feeds = await asyncio.get_running_loop().run_in_executor(
            None, image_feeds, dict(feeds), model.inputs, model.metadata, settings.max_image_pixels,
            settings.max_elements)
    return {k: np.ascontiguousarray(v) for k, v in feeds.items()}, parsed


def _no_version(name: str, version: str) -> str:
    return f"model '{name}' has no version '{version}': it has version 1 only (or leave /versions/... out)"


def starlette_routes(entries: dict[str, Entry], recorder: Metrics, settings: Settings | None = None):
    """The starlette application for every request but infer: health, server and model metadata, the model's
    configuration (Triton's, for `settings`' batch size), and /metrics. A `RequestError` is answered with its status
    and `{"error": ...}`; an unknown path with a JSON 404, a method a path does not take with a JSON 405 and Allow.

    Raises:
        MissingDependencyError: starlette is not installed.
    """
    try:
        from starlette.applications import Starlette
        from starlette.exceptions import HTTPException
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route
    except ImportError as err:
        raise MissingDependencyError("dlkit serve needs starlette and uvicorn, which are not installed; install them "
                                     "with: pip install 'dlkit[serve]'") from err

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    def entry_of(request) -> Entry:
        name = request.path_params["name"]
        if name not in entries:
            raise RequestError(404, f"no model '{name}' here; the models are {sorted(entries)}")
        version = request.path_params.get("version")
        if version is not None and version != "1":
            raise RequestError(404, _no_version(name, version))
        return entries[name]

    async def live(request):
        return JSONResponse({"live": True})

    async def ready(request):
        return JSONResponse({"ready": True})

    async def server(request):
        return JSONResponse({"name": "dlkit", "version": _version(),
                             "extensions": ["binary_tensor_data", "classification", "model_configuration"]})

    async def metadata(request):
        entry = entry_of(request)
        model = entry.model
        params = {"labels": list(model.labels) if model.labels else None, "batching": entry.batched,
                  "providers": list(model.providers)}
        if text_vectorizers(model):  # strings in; their token ids, sent as numbers, work too
            params["token_ids"] = token_inputs(model)
        return JSONResponse({"name": entry.name, "versions": ["1"], "platform": "onnxruntime_onnx",
                             "inputs": _described(advertised_inputs(model)), "outputs": _described(model.outputs),
                             "parameters": params})

    async def model_ready(request):
        entry_of(request)
        return JSONResponse({"name": request.path_params["name"], "ready": True})

    async def config(request):
        return JSONResponse(model_config(entry_of(request), settings or Settings()))

    async def metrics(request):
        return Response(recorder.text(), headers={"content-type": CONTENT_TYPE})

    async def request_error(request, err):
        return error(err.status, err.message)

    async def http_error(request, err):
        path = request.url.path
        if err.status_code == 404:
            message = (f"no path {path} here; the server answers /v2, /v2/health/live, /v2/health/ready, "
                       "/v2/models/NAME (and /ready, /config, /infer after it, or after /versions/1), /metrics and "
                       "/v2/openapi.json")
        elif err.status_code == 405:
            message = f"{request.method} is not allowed on {path}; it takes {(err.headers or {}).get('Allow', 'GET')}"
        else:
            message = str(err.detail)
        return JSONResponse({"error": message}, status_code=err.status_code, headers=err.headers)

    routes = [Route("/v2/health/live", live), Route("/v2/health/ready", ready), Route("/v2", server),
              Route("/metrics", metrics)]
    for base in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        routes += [Route(base, metadata), Route(base + "/ready", model_ready), Route(base + "/config", config)]
    return Starlette(routes=routes, exception_handlers={RequestError: request_error, HTTPException: http_error})


async def send_error(send, status: int, message: str, record: Callable[[int], None] | None = None,
                     allow: str | None = None) -> int:
    """`{"error": message}` with `status`; a 503 says when to retry, a 405 the methods `allow`ed, and a 401 or 413
    closes the connection (its body was not read, so the connection cannot carry another request)."""
    headers = [(b"content-type", b"application/json")]
    if allow is not None:
        headers.append((b"allow", allow.encode()))
    if status == 503:
        headers.append((b"retry-after", b"1"))
    if status in (401, 413):
        headers.append((b"connection", b"close"))
    return await _respond(send, status, dumps({"error": message}), headers, record)


async def _respond(send, status: int, body: bytes, headers: list, record: Callable[[int], None] | None) -> int:
    """One whole answer, its length declared; `record` counts it before the body goes out. Returns `status`."""
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(body)).encode()), *headers]})
    if record is not None:
        record(status)
    await send({"type": "http.response.body", "body": body})
    return status


class _Disconnected(Exception):
    """The client went away before its request body arrived."""


async def _read_body(receive, declared: bytes | None, limit: int, limit_mb: float) -> bytes:
    """The request body, refused with 413 as soon as it (or its declared length) is over `limit` bytes."""
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise RequestError(413, f"the request body is over the limit of {limit_mb:g} MB")
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the request body is over the limit of {limit_mb:g} MB")
        chunks.append(chunk)
        more = message.get("more_body", False)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _described(tensors) -> list[dict]:
    """A model's inputs or outputs as the metadata lists them: a dynamic axis is -1."""
    return [{"name": t.name, "datatype": datatype(t.dtype), "shape": [d if isinstance(d, int) else -1 for d in t.shape]}
            for t in tensors]


def _version() -> str:
    from dlkit_runtime import __version__

    return __version__
