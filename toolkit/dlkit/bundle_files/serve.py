"""Serves this bundle's model over HTTP with the Open Inference Protocol (KServe v2), batching concurrent requests.

    .venv/bin/python serve.py [--host 127.0.0.1] [--port 8000] [--token TOKEN]

The model's sha256 is checked against manifest.json before it is served; then: GET /v2/health/ready,
GET /v2/models/NAME, POST /v2/models/NAME/infer (JSON, or the binary extension tritonclient sends). Needs the
serve requirements (uvicorn, starlette) that install.sh put in .venv. Stops cleanly on SIGTERM.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the bundled dlkit_runtime, whatever else is installed

from dlkit_runtime.errors import DlkitError  # noqa: E402
from dlkit_runtime.manifest import open_model, read_manifest  # noqa: E402
from dlkit_runtime.serving import TOKEN_ENV, Settings, serve_models  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (another needs a token)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--token", default=None, help=f"require Authorization: Bearer TOKEN (or {TOKEN_ENV})")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-delay-ms", type=float, default=2.0)
    args = parser.parse_args(argv)
    try:
        manifest = read_manifest(HERE)
        model = open_model(HERE)
        name = manifest.models[0].file.removesuffix(".onnx")
        serve_models({name: model}, host=args.host, port=args.port,
                     settings=Settings(args.max_batch, args.max_delay_ms, token=args.token))
    except DlkitError as err:
        print(f"Error: {err}", file=sys.stderr)
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
