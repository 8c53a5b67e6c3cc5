"""The Open Inference Protocol (KServe v2 / Triton) over HTTP for dlkit_runtime models, with dynamic batching.

Needs the `serve` extra (uvicorn, starlette, prometheus_client), imported only when a server starts.

    from dlkit_runtime.serving import serve; serve(["cnn.onnx"], port=8000)   # what `dlkit serve cnn.onnx` runs
"""

from dlkit_runtime.serving.server import TOKEN_ENV, Settings, serve, serve_models, serve_workers

__all__ = ["TOKEN_ENV", "Settings", "serve", "serve_models", "serve_workers"]
