"""`serve`: models as a network service speaking the Open Inference Protocol (KServe v2) over HTTP, with dynamic
batching. Runs on the device: uvicorn (ASGI server) and starlette, the `serve` extra (`pip install 'dlkit[serve]'`),
imported only here; `import dlkit_runtime` never loads them.

    from dlkit_runtime.serving import serve; serve(["cnn.onnx"], port=8000)   # what `dlkit serve cnn.onnx` runs

Concurrent requests for a model whose batch axis is dynamic wait at most `max_delay_ms` to be run together, up to
`max_batch` samples; each response holds its own rows. A fixed-batch model runs one request at a time. The queue
is bounded: when it is full the answer is 503 with Retry-After, never unbounded memory. A bad request is a 4xx with
`{"error": ...}`; SIGTERM stops accepting and lets requests in flight finish (uvicorn's graceful shutdown).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from dlkit_runtime.serving import protocol as oip
from dlkit_runtime.serving.batching import INLINE_SECONDS, Batcher, Entry, batch_first, rows_of
from dlkit_runtime.serving.metrics import CONTENT_TYPE, Metrics
from dlkit_runtime.errors import InvalidInputError, MissingDependencyError

TOKEN_ENV = "DLKIT_SERVE_TOKEN"


@dataclass
class Settings:
    """max_batch: samples per run at most. max_delay_ms: how long a request waits for others. max_queue: requests
    waiting per model before 503. max_body_mb: the largest request body. max_elements: per input tensor."""

    max_batch: int = 32
    max_delay_ms: float = 2.0
    max_queue: int = 256
    max_body_mb: float = 64.0
    max_elements: int = 1 << 26
    token: str | None = None


def app(models: dict, settings: Settings):
    """The ASGI application for `models` ({name: dlkit_runtime.Model})."""
    try:
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route
    except ImportError as err:
        raise MissingDependencyError("dlkit serve needs starlette and uvicorn, which are not installed; install them "
                                     "with: pip install 'dlkit[serve]'") from err
    recorder = Metrics(lambda: {n: e.queue.qsize() if e.queue is not None else 0 for n, e in entries.items()})
    entries = {name: Entry(name, model, batch_first(model), recorder=recorder) for name, model in models.items()}
    batchers: dict[str, Batcher] = {}
    limit = int(settings.max_body_mb * (1 << 20))

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    def entry_of(request) -> Entry:
        name = request.path_params["name"]
        if name not in entries:
            raise oip.RequestError(404, f"no model '{name}' here; the models are {sorted(entries)}")
        return entries[name]

    async def live(request):
        return JSONResponse({"live": True})

    async def ready(request):
        return JSONResponse({"ready": True})

    async def server(request):
        return JSONResponse({"name": "dlkit", "version": _version(), "extensions": ["binary_tensor_data"]})

    async def metadata(request):
        entry = entry_of(request)
        model = entry.model
        tensors = [{"name": t.name, "datatype": oip.datatype(t.dtype),
                    "shape": [d if isinstance(d, int) else -1 for d in t.shape]} for t in model.inputs]
        outs = [{"name": t.name, "datatype": oip.datatype(t.dtype),
                 "shape": [d if isinstance(d, int) else -1 for d in t.shape]} for t in model.outputs]
        params = {"labels": list(model.labels) if model.labels else None, "batching": entry.batched,
                  "providers": list(model.providers)}
        return JSONResponse({"name": entry.name, "versions": ["1"], "platform": "onnxruntime_onnx",
                             "inputs": tensors, "outputs": outs, "parameters": params})

    async def model_ready(request):
        entry_of(request)
        return JSONResponse({"name": request.path_params["name"], "ready": True})

    async def infer(scope, receive, send, name: str, started_at: float) -> int:
        """POST /v2/models/{name}/infer as a bare ASGI handler, the one path under load: no routing, request or
        response objects per call (starlette serves the rest). Returns the status sent. The metrics count the
        request before its last byte goes out: a client that has its answer finds it counted."""
        def record(code: int) -> None:
            recorder.request(name, code, time.perf_counter() - started_at)

        try:
            entry = entries.get(name)
            if entry is None:
                raise oip.RequestError(404, f"no model '{name}' here; the models are {sorted(entries)}")
            entry.arriving += 1  # on the way while it is read and parsed, refused or not
            try:
                declared = length = None
                for key, value in scope["headers"]:
                    if key == b"content-length":
                        declared = value
                    elif key == b"inference-header-content-length":
                        length = value.decode("latin-1")
                body = await _read_body(receive, declared, limit, settings.max_body_mb)
                parsed = oip.parse(body, length, entry.model.inputs, [o.name for o in entry.model.outputs],
                                   settings.max_elements)
                feeds = {k: np.ascontiguousarray(v) for k, v in parsed.inputs.items()}
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
            content, headers = oip.encode(entry.name, outputs, parsed)
        except oip.RequestError as err:
            return await _send_error(send, err.status, err.message, record)
        except InvalidInputError as err:
            return await _send_error(send, 400, str(err), record)
        except _Disconnected:
            record(499)
            return 499  # nobody to answer (nginx's code for it, in the log and metrics only)
        return await _respond(send, 200, content, [(k.encode(), v.encode()) for k, v in headers.items()], record)

    async def not_post(request):
        return error(405, "infer takes POST")

    async def metrics(request):
        return Response(recorder.text(), headers={"content-type": CONTENT_TYPE})

    routes = [Route("/v2/health/live", live), Route("/v2/health/ready", ready), Route("/v2", server),
              Route("/v2/models/{name}", metadata), Route("/v2/models/{name}/ready", model_ready),
              Route("/v2/models/{name}/infer", not_post, methods=["GET", "PUT", "DELETE", "PATCH"]),
              Route("/metrics", metrics)]

    async def request_error(request, err):
        return error(err.status, err.message)

    application = Starlette(routes=routes, exception_handlers={oip.RequestError: request_error})
    open_paths = ("/v2/health/live", "/v2/health/ready")  # probes (systemd, a load balancer) need no token
    expected = f"Bearer {settings.token}".encode() if settings.token is not None else None
    log = _AccessLog(sys.stderr)

    async def handled(scope, receive, send):
        """The token first (compared in constant time; the health probes are open), then infer or starlette; one
        access-log line per request, and infer's status and time in the metrics."""
        if scope["type"] != "http":
            return await application(scope, receive, send)  # lifespan
        started_at = time.perf_counter()
        path = scope["path"]
        parts = path.split("/")
        infers = len(parts) == 5 and parts[1] == "v2" and parts[2] == "models" and parts[4] == "infer"
        if expected is not None and path not in open_paths and not hmac.compare_digest(
                next((v for k, v in scope["headers"] if k == b"authorization"), b""), expected):
            code = await _send_error(send, 401, "missing or wrong token: send Authorization: Bearer <token>",
                                     (lambda c: recorder.request(parts[3], c, time.perf_counter() - started_at))
                                     if infers else None)
        elif infers and scope["method"] == "POST":
            code = await infer(scope, receive, send, parts[3], started_at)
        else:
            status = {}

            async def send_status(message):
                if message["type"] == "http.response.start":
                    status["code"] = message["status"]
                await send(message)

            await application(scope, receive, send_status)
            code = status.get("code", 0)
        elapsed = time.perf_counter() - started_at
        if infers and scope["method"] != "POST":
            recorder.request(parts[3], code, elapsed)
        log.write(f'{(scope.get("client") or ("-",))[0]} "{scope["method"]} {path}" {code} {1000 * elapsed:.1f}ms')

    return handled


class _Disconnected(Exception):
    """The client went away before its request body arrived."""


async def _read_body(receive, declared: bytes | None, limit: int, limit_mb: float) -> bytes:
    """The request body, refused with 413 as soon as it (or its declared length) is over `limit` bytes."""
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise oip.RequestError(413, f"the request body is over the limit of {limit_mb:g} MB")
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise oip.RequestError(413, f"the request body is over the limit of {limit_mb:g} MB")
        chunks.append(chunk)
        more = message.get("more_body", False)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _send_error(send, status: int, message: str, record: Callable[[int], None] | None = None) -> int:
    """`{"error": message}` with `status`; a 503 says when to retry, and a 401 or 413 closes the connection (its
    body was not read, so the connection cannot carry another request)."""
    headers = [(b"content-type", b"application/json")]
    if status == 503:
        headers.append((b"retry-after", b"1"))
    if status in (401, 413):
        headers.append((b"connection", b"close"))
    return await _respond(send, status, oip.dumps({"error": message}), headers, record)


async def _respond(send, status: int, body: bytes, headers: list, record: Callable[[int], None] | None) -> int:
    """One whole answer, its length declared; `record` counts it before the body goes out. Returns `status`."""
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(body)).encode()), *headers]})
    if record is not None:
        record(status)
    await send({"type": "http.response.body", "body": body})
    return status


class _AccessLog:
    """One line per request, written together once per turn of the event loop: under load that is one write for
    a batch of requests, not one each."""

    def __init__(self, stream):
        self.stream, self.lines = stream, []

    def write(self, line: str) -> None:
        if not self.lines:
            asyncio.get_running_loop().call_soon(self.flush)
        self.lines.append(line)

    def flush(self) -> None:
        lines, self.lines = self.lines, []
        if lines:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()


def serve(paths: Sequence[str | os.PathLike], *, names: Sequence[str] = (), host: str = "127.0.0.1",
          port: int = 8000, settings: Settings | None = None, providers=None, threads: int | None = None,
          workers: int = 1) -> int:
    """Loads the models and serves them until SIGTERM or Ctrl-C. With `workers` > 1, that many processes share the
    port (`dlkit_runtime.workers`), each with its own copy of the models and `threads` (default: the physical
    cores shared out) onnxruntime threads. Returns the exit code (0 after a clean stop).

    Raises:
        InvalidInputError: a bad model path, a duplicate name, or bad settings. MissingDependencyError: no uvicorn.
    """
    from dlkit_runtime import Model

    settings = settings or Settings()
    for value, name in ((settings.max_batch, "max_batch"), (settings.max_queue, "max_queue"), (workers, "workers")):
        if not isinstance(value, int) or value < 1:
            raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    if settings.max_delay_ms < 0 or settings.max_body_mb <= 0:
        raise InvalidInputError("max_delay_ms must be >= 0 and max_body_mb > 0")
    if names and len(names) != len(paths):
        raise InvalidInputError(f"{len(names)} name(s) for {len(paths)} model(s); give one --name per model or none")
    chosen = list(names) or [Path(p).name.removesuffix(".onnx") for p in paths]
    if len(set(chosen)) != len(chosen):
        raise InvalidInputError(f"two models would be served as the same name ({chosen}); name them with --name")
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise InvalidInputError(f"no model file {missing[0]}; give the path of an .onnx file")
    _require_server()

    def load() -> dict:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return {name: Model(path, providers=providers, threads=threads) for name, path in zip(chosen, paths)}

    if workers == 1:
        return serve_models(load(), host=host, port=port, settings=settings)
    if threads is None:
        from dlkit_runtime.model import physical_cores

        threads = max(1, physical_cores() // workers)
    return serve_workers(load, chosen, workers, host=host, port=port, settings=settings)


def serve_workers(load: Callable[[], dict], names: Sequence[str], workers: int, *, host: str = "127.0.0.1",
                  port: int = 8000, settings: Settings | None = None) -> int:
    """`workers` processes serving on one port (`dlkit_runtime.workers`), each calling `load()` for its own
    {name: Model} (models are loaded after the fork: onnxruntime's threads do not survive one). Returns the exit
    code: 0 after a clean stop, else a failed worker's."""
    from dlkit_runtime.serving import workers as processes

    if not isinstance(workers, int) or workers < 1:
        raise InvalidInputError(f"workers must be a positive integer, got {workers!r}")
    _require_server()
    sock = processes.listen(host, port)
    _announce(list(names), host, port, settings or Settings(), f" with {workers} worker processes")
    return processes.run(workers, sock, lambda shared: serve_models(load(), host=host, port=port, settings=settings,
                                                                  sockets=[shared], announce=False))


def serve_models(models: dict, *, host: str = "127.0.0.1", port: int = 8000, settings: Settings | None = None,
                 sockets: list | None = None, announce: bool = True) -> int:
    """Serves loaded `dlkit_runtime.Model`s by name (a bundle's `serve.py` loads its model checked first), on
    `host`:`port` or on listening `sockets` already bound. Returns 0 after a clean stop."""
    uvicorn = _require_server()
    settings = settings or Settings()
    settings.token = settings.token or os.environ.get(TOKEN_ENV) or None
    application = app(models, settings)
    if sockets is None:  # bound here: a busy port is a one-line error, before the server says it serves
        from dlkit_runtime.serving import workers as processes

        sockets = [processes.listen(host, port)]
    if announce:
        _announce(list(models), host, port, settings, "")
    # proxy_headers off: the access log names the peer that connected, not what an X-Forwarded-For claims
    config = uvicorn.Config(application, host=host, port=port, log_level="warning", access_log=False,
                            proxy_headers=False,
                            timeout_graceful_shutdown=30, limit_concurrency=4 * settings.max_queue + 64)
    # uvicorn drains requests in flight on SIGTERM or Ctrl-C, then raises the signal again to the handler that was
    # there before it. That handler asks the server to stop: a signal before uvicorn installs its own (during the
    # start) stops it too, and one after ends the process with 0 (systemd's clean stop), not killed by the signal
    import signal

    server = uvicorn.Server(config)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: setattr(server, "should_exit", True))
    server.run(sockets=sockets)
    if announce:
        print("stopped", file=sys.stderr)
    return 0


def _require_server():
    try:
        import uvicorn
    except ImportError as err:
        raise MissingDependencyError("dlkit serve needs uvicorn and starlette, which are not installed; install them "
                                     "with: pip install 'dlkit[serve]'") from err
    return uvicorn


def _announce(names: list, host: str, port: int, settings: Settings, how: str) -> None:
    token = settings.token or os.environ.get(TOKEN_ENV) or None
    if not _loopback(host) and token is None:
        print(f"warning: serving on {host} without a token: anyone who reaches this port can use the models; set "
              f"--token or {TOKEN_ENV}", file=sys.stderr)
    print(f"serving {', '.join(names)} on http://{host}:{port}/v2 (Open Inference Protocol){how}", file=sys.stderr,
          flush=True)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _version() -> str:
    from dlkit_runtime import __version__

    return __version__
