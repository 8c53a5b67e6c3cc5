"""`dlkit serve`: a thin shell over `dlkit_runtime.serving.serve`."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("serve")
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--name", "names", multiple=True, metavar="NAME", help="A model's name, once per model. [default: file stem]")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (another needs --token).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--token", envvar="DLKIT_SERVE_TOKEN", help="Require 'Authorization: Bearer TOKEN'. [env: DLKIT_SERVE_TOKEN]")
@click.option("--tls-cert", metavar="FILE", envvar="DLKIT_SERVE_TLS_CERT",
              help="Serve HTTPS with this PEM certificate (its chain after it). [env: DLKIT_SERVE_TLS_CERT]")
@click.option("--tls-key", metavar="FILE", envvar="DLKIT_SERVE_TLS_KEY",
              help="The certificate's PEM private key (unencrypted). [env: DLKIT_SERVE_TLS_KEY]")
@click.option("--max-batch", type=click.IntRange(min=1), default=32, show_default=True,
              help="Samples run together at most (dynamic-batch models).")
@click.option("--max-delay-ms", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="How long waiting requests wait for others to share a batch.")
@click.option("--max-queue", type=click.IntRange(min=1), default=256, show_default=True,
              help="Requests waiting per model before 503.")
@click.option("--max-body-mb", type=click.FloatRange(min=0, min_open=True), default=64.0, show_default=True,
              help="Largest request body (413 above it).")
@click.option("--providers", help="Execution providers in order, e.g. 'cuda,cpu'. [default: all available]")
@click.option("--threads", type=click.IntRange(min=1),
              help="Intra-op threads per model. [default: physical cores, shared out among the workers]")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Server processes sharing the port, each with its own copy of the models: more requests per "
                   "second for small models (one process parses HTTP on one core at most).")
def command(models, names, host, port, token, tls_cert, tls_key, max_batch, max_delay_ms, max_queue, max_body_mb,
            providers, threads, workers):
    """Serve MODELS (.onnx) over HTTP with the Open Inference Protocol (KServe v2, Triton's HTTP/REST API).

    GET /v2/health/ready, GET /v2/models/NAME, POST /v2/models/NAME/infer (JSON or the binary tensor extension,
    as tritonclient sends it); concurrent requests are batched. Stops cleanly on SIGTERM or Ctrl-C. With --tls-cert
    and --tls-key it speaks HTTPS only; GET /v2/openapi.json describes the interface (OpenAPI 3).
    """
    from dlkit_runtime.serving import Settings, serve

    code = serve(models, names=names, host=host, port=port, providers=providers, threads=threads, workers=workers,
                 settings=Settings(max_batch, max_delay_ms, max_queue, max_body_mb, token=token, tls_cert=tls_cert,
                                   tls_key=tls_key))
    if code:
        click.get_current_context().exit(code)
