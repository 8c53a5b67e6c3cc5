"""The files `dlkit bundle` writes beside the model: `predict.py` and `bench.py` are copied as they are (they run on
the device with the bundled `dlkit_runtime`); the texts below are filled in with `str.format`."""

INSTALL_SH = """\
#!/bin/sh
# Installs this bundle's runtime into .venv beside this file: python3 -m venv + pip install -r requirements.txt.
# Extra arguments go to pip, e.g. an offline install: ./install.sh --no-index --find-links wheels/
set -eu
cd "$(dirname "$0")"
PYTHON=${{PYTHON:-python3}}
# The machine first: onnxruntime publishes wheels for 64-bit ARM and x86-64 Linux only.
machine=$(uname -m)
bits=$(getconf LONG_BIT 2>/dev/null || echo 64)
case "$machine" in
  armv6l|armv7l|armv8l|arm*)
    echo "install.sh: this is 32-bit Raspberry Pi OS ($machine): onnxruntime publishes no 32-bit ARM wheels; install the 64-bit Raspberry Pi OS (trixie, arm64)" >&2; exit 1 ;;
  aarch64|arm64|x86_64|amd64)
    if [ "$bits" = 32 ]; then
      echo "install.sh: this is a 32-bit userland on a 64-bit kernel ($machine, getconf LONG_BIT = 32): onnxruntime publishes no 32-bit wheels; install the 64-bit OS (Raspberry Pi OS arm64)" >&2; exit 1
    fi ;;
  *) echo "install.sh: this machine is $machine: onnxruntime publishes Linux wheels for aarch64 and x86_64 only; use one of those" >&2; exit 1 ;;
esac
case "$machine" in
  {machine}) ;;
  *) echo "install.sh: warning: this bundle was made for {target} ({machine}); this machine is $machine" >&2 ;;
esac
command -v "$PYTHON" >/dev/null 2>&1 || {{
  echo "install.sh: $PYTHON is not installed; on Raspberry Pi OS: sudo apt install python3 python3-venv" >&2; exit 1; }}
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < ({floor_tuple}))' || {{
  echo "install.sh: this bundle's pinned numpy needs Python {floor} or newer ($PYTHON is $("$PYTHON" --version 2>&1)); {systems_have}" >&2; exit 1; }}
found=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
case "$found" in
  {tested_cases}) ;;
  *) echo "install.sh: note: this bundle was tested with Python {tested}; $PYTHON is $found, for which pip may find no wheel of a pinned version, or one not tested here" >&2 ;;
esac
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv || {{ echo "install.sh: python3 -m venv failed; on Raspberry Pi OS: sudo apt install python3-venv" >&2; exit 1; }}
fi
.venv/bin/python -m pip install --disable-pip-version-check --only-binary=:all: -r requirements.txt "$@"
for unit in *.service.in; do
  sed "s|@BUNDLE@|$(pwd)|g; s|@USER@|$(id -un)|g" "$unit" > "${{unit%.in}}"
done
.venv/bin/python predict.py --check
echo "installed; run: .venv/bin/python predict.py INPUT   (an .npy, .npz or an image)"
"""

SERVICE = """\
# systemd unit: predicts every .npy/.npz or image (.jpg, .png, ...) dropped into inbox/ and writes outbox/<name>.json.
# install.sh fills in the paths; then: sudo cp {service} /etc/systemd/system/ && sudo systemctl enable --now {name}
[Unit]
Description=dlkit model {model} ({target})
After=network.target

[Service]
Type=simple
User=@USER@
WorkingDirectory=@BUNDLE@
ExecStart=@BUNDLE@/.venv/bin/python @BUNDLE@/predict.py --watch @BUNDLE@/inbox --outbox @BUNDLE@/outbox
Restart=on-failure
RestartSec=5
Environment=PYTHONUNBUFFERED=1

[Install]
WantedBy=multi-user.target
"""

README = """\
# {model}: a dlkit bundle for {target_name}

Made by dlkit {version} on {created}, tested with Python {tested}. Copy this folder to the device, then:

```sh
./install.sh                            # once: a .venv with {requirements}
.venv/bin/python predict.py input.npy   # prints the prediction as JSON (.npy, .npz, or a JPEG/PNG for an image model)
```

## Files

| file | what |
| --- | --- |
{model_rows}| `manifest.json` | dlkit version, each model's sha256, inputs, outputs, labels, target, creation time |
| `dlkit_runtime/` | the runtime (Python standard library, numpy, onnxruntime); it refuses a model whose sha256 differs from the manifest's |
| `requirements.txt` | numpy and onnxruntime (and Pillow for an image model), pinned to versions with aarch64 and x86-64 wheels for Python {pythons} |
| `install.sh` | `python3 -m venv .venv` and `pip install -r requirements.txt` (extra arguments go to pip) |
| `predict.py` | the entry point: `predict.py INPUT [--top-k 5] [--model FILE] [--output out.npz]`; `--watch DIR` for the service |
| `bench.py` | times each bundled model here and says which one to run |
| `{service}.in` | a systemd unit (install.sh writes `{service}` with this folder's path): predicts each file dropped into `inbox/` to `outbox/<name>.json` |

## Inputs and outputs

{tensors}

## Advice for {target_name}

{advice}

{memory}
"""


SERVE_SERVICE = """\
# systemd unit: serves the model over HTTP (Open Inference Protocol) on 127.0.0.1:8000.
# install.sh fills in the paths; then: sudo cp dlkit-serve.service /etc/systemd/system/ &&
# sudo systemctl enable --now dlkit-serve
# To serve the network, write serve.env beside serve.py (chmod 600: it holds the token), e.g.
#   DLKIT_SERVE_ARGS=--host 0.0.0.0
#   DLKIT_SERVE_TOKEN=a-long-random-secret
#   DLKIT_SERVE_TLS_CERT=/etc/ssl/dlkit/cert.pem
#   DLKIT_SERVE_TLS_KEY=/etc/ssl/dlkit/key.pem
[Unit]
Description=dlkit model server {model} ({target})
After=network.target

[Service]
Type=simple
User=@USER@
WorkingDirectory=@BUNDLE@
EnvironmentFile=-@BUNDLE@/serve.env
ExecStart=@BUNDLE@/.venv/bin/python @BUNDLE@/serve.py --port 8000 $DLKIT_SERVE_ARGS
Restart=on-failure
RestartSec=5
Environment=PYTHONUNBUFFERED=1

[Install]
WantedBy=multi-user.target
"""

SERVE_README = """
## Serving over HTTP

```sh
.venv/bin/python serve.py --port 8000              # or the systemd unit {service} (install.sh fills it in)
curl -s localhost:8000/v2/health/ready
curl -s localhost:8000/v2/models/{name}             # inputs, outputs, labels
```

From another machine (start it with `--host 0.0.0.0 --token SECRET --tls-cert cert.pem --tls-key key.pem`), in
Python:

```python
import numpy as np, tritonclient.http as http       # pip install 'tritonclient[http]'
client = http.InferenceServerClient("raspberrypi.local:8000", ssl=True, ssl_options={{"ca_certs": "ca.pem"}})
token = {{"Authorization": "Bearer SECRET"}}
name = client.get_model_metadata("{name}", headers=token)["inputs"][0]["name"]
x = http.InferInput(name, list(batch.shape), "FP32")
x.set_data_from_numpy(batch)
print(client.infer("{name}", [x], headers=token).get_response())
```

Without `--tls-cert` and `--tls-key` the server speaks plain HTTP, and the token crosses the network in the clear
(serve.py warns). With them it speaks HTTPS only: the certificate's names must include the one clients connect to,
and a client that does not trust its issuer gets the issuer's certificate (`ca.pem` above). The systemd unit reads
its options from `serve.env` beside serve.py, if there is one (chmod 600: it holds the token):

```sh
DLKIT_SERVE_ARGS=--host 0.0.0.0 --workers 4
DLKIT_SERVE_TOKEN=SECRET
DLKIT_SERVE_TLS_CERT=/etc/ssl/dlkit/cert.pem
DLKIT_SERVE_TLS_KEY=/etc/ssl/dlkit/key.pem
```

`GET /v2/openapi.json` describes every path, status and body (OpenAPI 3).

Many small requests at once (several clients): `--workers 4` runs four server processes on the port, one per core
of a Pi, each with its own copy of the model. One Python process parses HTTP on one core at most; for a small model
that, not the model, bounds the requests per second.
"""
