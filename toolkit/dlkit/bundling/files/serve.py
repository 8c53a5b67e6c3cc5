"""Serves this bundle's model over HTTP with the Open Inference Protocol (KServe v2), batching concurrent requests.

    .venv/bin/python serve.py [--host 127.0.0.1] [--port 8000] [--token TOKEN] [--workers N]
                              [--tls-cert CERT.pem --tls-key KEY.pem]

The model's sha256 is checked against manifest.json before it is served; then: GET /v2/health/ready,
GET /v2/models/NAME, POST /v2/models/NAME/infer (JSON, or the binary extension tritonclient sends). Needs the
serve requirements (uvicorn, starlette) that install.sh put in .venv. Stops cleanly on SIGTERM. The token and the
TLS files may come from the environment instead (DLKIT_SERVE_TOKEN, DLKIT_SERVE_TLS_CERT, DLKIT_SERVE_TLS_KEY), as
the systemd unit reads them from serve.env.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the bundled dlkit_runtime, whatever else is installed

from dlkit_runtime.errors import DlkitError  # noqa: E402
from dlkit_runtime.integrity import check_sha256  # noqa: E402
from dlkit_runtime.manifest import open_model, read_manifest  # noqa: E402
from dlkit_runtime.serving import (  # noqa: E402
    TLS_CERT_ENV, TLS_KEY_ENV, TOKEN_ENV, Settings, serve_models, serve_workers)
from dlkit_runtime.serving.tls import from_environment  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (another needs a token)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--token", default=None, help=f"require Authorization: Bearer TOKEN (or {TOKEN_ENV})")
    parser.add_argument("--tls-cert", default=None, help=f"serve HTTPS with this PEM certificate (or {TLS_CERT_ENV})")
    parser.add_argument("--tls-key", default=None, help=f"the certificate's PEM private key (or {TLS_KEY_ENV})")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-delay-ms", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=1,
                        help="server processes sharing the port, each with its own copy of the model")
    args = parser.parse_args(argv)
    try:
        manifest = read_manifest(HERE)
        name = manifest.models[0].file.removesuffix(".onnx")
        settings = from_environment(Settings(args.max_batch, args.max_delay_ms, token=args.token,
                                             tls_cert=args.tls_cert, tls_key=args.tls_key))  # TLS checked first
        if args.workers == 1:
            return serve_models({name: open_model(HERE)}, host=args.host, port=args.port, settings=settings)
        entry = manifest.model(None)
        check_sha256((HERE / entry.file).read_bytes(), entry.sha256, HERE / entry.file)  # before any worker starts
        return serve_workers(lambda: {name: open_model(HERE)}, [name], args.workers, host=args.host, port=args.port,
                             settings=settings)
    except DlkitError as err:
        print(f"Error: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    sys.exit(main())
