"""`serve`: models as a network service speaking the Open Inference Protocol (KServe v2) over HTTP, with dynamic
batching. Runs on the device: uvicorn (ASGI server) and starlette, the `serve` extra (`pip install 'dlkit[serve]'`),
imported only when a server starts (uvicorn here, starlette in `dlkit_runtime.serving.routes`); neither
`import dlkit_runtime` nor `import dlkit_runtime.serving` loads them.

    from dlkit_runtime.serving import serve; serve(["cnn.onnx"], port=8000)   # what `dlkit serve cnn.onnx` runs

Concurrent requests for a model whose batch axis is dynamic wait at most `max_delay_ms` to be run together, up to
`max_batch` samples; each response holds its own rows. A fixed-batch model runs one request at a time. The queue
is bounded: when it is full the answer is 503 with Retry-After, never unbounded memory. A bad request is a 4xx with
`{"error": ...}`; SIGTERM stops accepting and lets requests in flight finish (uvicorn's graceful shutdown). With
`Settings.tls_cert` and `tls_key` it speaks HTTPS only (`dlkit_runtime.serving.tls`); GET /v2/openapi.json describes
it all (`dlkit_runtime.serving.openapi`).
"""

from __future__ import annotations

import ipaddress
import os
import sys
import warnings
from pathlib import Path
from typing import Callable, Sequence

from dlkit_runtime.errors import InvalidInputError, MissingDependencyError
from dlkit_runtime.serving.batching import Entry, batch_first
from dlkit_runtime.serving.dispatch import dispatching_app
from dlkit_runtime.serving.metrics import Metrics
from dlkit_runtime.serving.routes import infer_handler, starlette_routes
from dlkit_runtime.serving.settings import TOKEN_ENV, Settings
from dlkit_runtime.serving.tls import from_environment, uvicorn_server


def app(models: dict, settings: Settings):
    """The ASGI application for `models` ({name: dlkit_runtime.Model}): the token and the access log in front
    (`dlkit_runtime.serving.dispatch`), POST infer as a bare ASGI handler and starlette for the rest
    (`dlkit_runtime.serving.routes`).

    Raises:
        MissingDependencyError: starlette is not installed.
    """
    entries, recorder = _entries(models)
    application = starlette_routes(entries, recorder, settings)  # MissingDependencyError without starlette
    from starlette.responses import JSONResponse

    from dlkit_runtime.serving.openapi import OPENAPI_PATH, description

    document = description(list(models), token=settings.token is not None)

    async def openapi(request):
        return JSONResponse(document)

    application.add_route(OPENAPI_PATH, openapi, methods=["GET"])
    infer = infer_handler(entries, recorder, settings)
    return dispatching_app(application, infer, recorder, settings)


def _entries(models: dict) -> tuple[dict[str, Entry], Metrics]:
    """Each model's `Entry` by name (its queue, run time and whether it batches), and the metrics that count them."""
    entries: dict[str, Entry] = {}
    recorder = Metrics(lambda: {n: e.queue.qsize() if e.queue is not None else 0 for n, e in entries.items()})
    entries.update((name, Entry(name, model, batch_first(model), recorder=recorder)) for name, model in models.items())
    return entries, recorder


def serve(paths: Sequence[str | os.PathLike], *, names: Sequence[str] = (), host: str = "127.0.0.1",
          port: int = 8000, settings: Settings | None = None, providers=None, threads: int | None = None,
          workers: int = 1) -> int:
    """Loads the models and serves them until SIGTERM or Ctrl-C. With `workers` > 1, that many processes share the
    port (`dlkit_runtime.serving.workers`), each with its own copy of the models and `threads` (default: the physical
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
    settings = from_environment(settings)  # the TLS files checked before the models load
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
    """`workers` processes serving on one port (`dlkit_runtime.serving.workers`), each calling `load()` for its own
    {name: Model} (models are loaded after the fork: onnxruntime's threads do not survive one). Returns the exit
    code: 0 after a clean stop, else a failed worker's."""
    import dlkit_runtime.serving.workers as processes

    if not isinstance(workers, int) or workers < 1:
        raise InvalidInputError(f"workers must be a positive integer, got {workers!r}")
    _require_server()
    settings = from_environment(settings or Settings())
    sock = processes.listen(host, port)
    _announce(list(names), host, port, settings, f" with {workers} worker processes")
    return processes.run(workers, sock, lambda shared: serve_models(load(), host=host, port=port, settings=settings,
                                                                  sockets=[shared], announce=False))


def serve_models(models: dict, *, host: str = "127.0.0.1", port: int = 8000, settings: Settings | None = None,
                 sockets: list | None = None, announce: bool = True) -> int:
    """Serves loaded `dlkit_runtime.Model`s by name (a bundle's `serve.py` loads its model checked first), on
    `host`:`port` or on listening `sockets` already bound. Returns 0 after a clean stop."""
    uvicorn = _require_server()
    settings = from_environment(settings or Settings())
    application = app(models, settings)
    if sockets is None:  # bound here: a busy port is a one-line error, before the server says it serves
        import dlkit_runtime.serving.workers as processes

        sockets = [processes.listen(host, port)]
    if announce:
        _announce(list(models), host, port, settings, "")
    # proxy_headers off: the access log names the peer that connected, not what an X-Forwarded-For claims
    config = uvicorn.Config(application, host=host, port=port, log_level="warning", access_log=False,
                            proxy_headers=False, ssl_certfile=settings.tls_cert, ssl_keyfile=settings.tls_key,
                            timeout_graceful_shutdown=30, limit_concurrency=4 * settings.max_queue + 64)
    # uvicorn drains requests in flight on SIGTERM or Ctrl-C, then raises the signal again to the handler that was
    # there before it. That handler asks the server to stop: a signal before uvicorn installs its own (during the
    # start) stops it too, and one after ends the process with 0 (systemd's clean stop), not killed by the signal
    import signal

    server = uvicorn_server(uvicorn, config)
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
    """The one line that says where the models are served, after at most one warning about who can reach them."""
    tls = settings.tls_cert is not None
    if not _loopback(host) and settings.token is None:
        print(f"warning: serving on {host} without a token: anyone who reaches this port can use the models; set "
              f"--token or {TOKEN_ENV}", file=sys.stderr)
    elif not _loopback(host) and not tls:
        print(f"warning: serving on {host} with a token over plain HTTP: the token and the data cross the network in "
              f"the clear; give --tls-cert and --tls-key (or put a TLS proxy in front)", file=sys.stderr)
    print(f"serving {', '.join(names)} on {'https' if tls else 'http'}://{host}:{port}/v2 (Open Inference Protocol)"
          f"{how}", file=sys.stderr, flush=True)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"

