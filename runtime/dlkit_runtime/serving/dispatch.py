"""What every request meets first: the token (compared in constant time; the health probes are open), then POST
infer (/v2/models/{name}/infer, or /v2/models/{name}/versions/{version}/infer) to its bare ASGI handler, another
method on it to a 405, and anything else to starlette (`dlkit_runtime.serving.routes`); one access-log line per
request, and infer's status and time in the metrics. Standard library only."""

from __future__ import annotations

import asyncio
import hmac
import sys
import time

from dlkit_runtime.serving.metrics import Metrics
from dlkit_runtime.serving.routes import send_error
from dlkit_runtime.serving.settings import Settings


def dispatching_app(application, infer, recorder: Metrics, settings: Settings):
    """The ASGI application that checks the token, then sends POST /v2/models/{name}/infer to `infer` and the rest
    (lifespan included) to `application`, writing the access log and infer's metrics."""
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
        infers = parts[1:3] == ["v2", "models"] and parts[-1] == "infer" and (
            len(parts) == 5 or (len(parts) == 7 and parts[4] == "versions"))
        if expected is not None and path not in open_paths and not hmac.compare_digest(
                next((v for k, v in scope["headers"] if k == b"authorization"), b""), expected):
            code = await send_error(send, 401, "missing or wrong token: send Authorization: Bearer <token>",
                                    (lambda c: recorder.request(parts[3], c, time.perf_counter() - started_at))
                                    if infers else None)
        elif infers and scope["method"] == "POST":
            code = await infer(scope, receive, send, parts[3], started_at, parts[5] if len(parts) == 7 else None)
        elif infers:
            code = await send_error(send, 405, f"{scope['method']} is not allowed on {path}; infer takes POST",
                                    allow="POST")
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
