"""The Open Inference Protocol (KServe v2 / Triton) over HTTP for dlkit_runtime models, with dynamic batching.

Needs the `serve` extra (uvicorn, starlette, prometheus_client), imported only when a server starts.

    from dlkit_runtime.serving import serve; serve(["cnn.onnx"], port=8000)   # what `dlkit serve cnn.onnx` runs

Modules: `server` (serve, serve_models, serve_workers, the ASGI app), `settings`, `dispatch` (token, access log,
where a request goes), `routes` (the infer handler and starlette's routes), `protocol` (the infer request and
response), `batching`, `metrics`, `workers` (several processes on one port), `tls` (HTTPS's files checked),
`openapi` (the OpenAPI description served at /v2/openapi.json).
"""

from dlkit_runtime.serving.server import serve, serve_models, serve_workers
from dlkit_runtime.serving.settings import TLS_CERT_ENV, TLS_KEY_ENV, TOKEN_ENV, Settings

__all__ = ["TLS_CERT_ENV", "TLS_KEY_ENV", "TOKEN_ENV", "Settings", "serve", "serve_models", "serve_workers"]
