"""`dlkit serve --tls-cert --tls-key` (and a bundle's serve.py): HTTPS with a certificate made here by a test CA
(`trustme`), answered through tritonclient with that CA; plain HTTP to the same port gets no HTTP answer; bad
certificate or key files are one-line errors; a token beyond loopback without TLS is a one-line warning; SIGTERM
stops an HTTPS server promptly though a client keeps its connection open."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from dlkit_runtime import Model
from tests.runtime.serving.launch import dlkit_serve, free_port, serving, stop

trustme = pytest.importorskip("trustme", reason="the TLS tests make their certificates with trustme")
http = pytest.importorskip("tritonclient.http", reason="the TLS tests talk to the server with tritonclient")


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict:
    """A test CA, a server certificate for 127.0.0.1 and localhost with its key, another certificate's key, the key
    under a passphrase, and a file that is no certificate: PEM files by role."""
    from cryptography.hazmat.primitives import serialization

    folder = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    files = {role: folder / f"{role}.pem" for role in ("ca", "cert", "key", "other_key", "locked_key", "junk")}
    ca.cert_pem.write_to_path(files["ca"])
    for i, blob in enumerate(server.cert_chain_pems):
        blob.write_to_path(files["cert"], append=i > 0)
    server.private_key_pem.write_to_path(files["key"])
    ca.issue_cert("elsewhere.example").private_key_pem.write_to_path(files["other_key"])
    key = serialization.load_pem_private_key(server.private_key_pem.bytes(), None)
    files["locked_key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.BestAvailableEncryption(b"secret")))
    files["junk"].write_text("not a certificate\n")
    return files


def _pixels(rows: int) -> np.ndarray:
    return np.random.default_rng(1).uniform(0, 255, (rows, 28, 28, 1)).astype(np.float32)


def _infer(client, x: np.ndarray, **kwargs) -> np.ndarray:
    pixels = http.InferInput("pixels", list(x.shape), "FP32")
    pixels.set_data_from_numpy(x)
    return client.infer("tiny", [pixels], **kwargs).as_numpy("digit")


def test_https_answers_tritonclient_and_plain_http_gets_no_answer(tiny_onnx, pki):
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    with serving(dlkit_serve(tiny_onnx, "--tls-cert", pki["cert"], "--tls-key", pki["key"]),
                 context=context) as served:
        client = http.InferenceServerClient(f"127.0.0.1:{served.port}", ssl=True,
                                            ssl_options={"ca_certs": str(pki["ca"])})
        assert client.is_server_ready() and client.is_model_ready("tiny")
        x = _pixels(3)
        # the same graph on the same rows in one onnxruntime: float32 round-off of a 784-term product at most
        np.testing.assert_allclose(_infer(client, x), Model(tiny_onnx).predict(x)["digit"], rtol=1e-5, atol=1e-3)
        with socket.create_connection(("127.0.0.1", served.port), timeout=10) as plain:
            plain.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            try:
                reply = plain.recv(4096)
            except ConnectionResetError:
                reply = b""
        assert not reply.startswith(b"HTTP/"), reply[:200]  # the TLS handshake fails: no HTTP answer at all
        untrusting = http.InferenceServerClient(f"127.0.0.1:{served.port}", ssl=True)  # the system's CAs only
        with pytest.raises(ssl.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
            untrusting.is_server_live()
        assert client.is_server_live()  # still up after both
        started = time.perf_counter()
        served.proc.send_signal(signal.SIGTERM)  # the client keeps its connection open and never says goodbye
        assert served.proc.wait(timeout=60) == 0
        assert time.perf_counter() - started < 10  # not the event loop's 30 s wait for the client's close_notify
    said = served.stderr()
    assert f"serving tiny on https://127.0.0.1:{served.port}/v2" in said and "Traceback" not in said, said[-2000:]


@pytest.mark.parametrize("given, named", [
    (("--tls-cert", "{missing}", "--tls-key", "{key}"), "no TLS certificate file {missing}"),
    (("--tls-cert", "{cert}"), "--tls-cert needs --tls-key"),
    (("--tls-key", "{key}"), "--tls-key needs --tls-cert"),
    (("--tls-cert", "{cert}", "--tls-key", "{other_key}"), "the TLS key {other_key} is not the private key of the "
                                                          "certificate {cert}"),
    (("--tls-cert", "{junk}", "--tls-key", "{key}"), "the TLS certificate {junk} is not a PEM certificate"),
    (("--tls-cert", "{cert}", "--tls-key", "{locked_key}"), "the TLS key {locked_key} is not an unencrypted PEM"),
])
def test_bad_tls_files_are_one_line_errors(tiny_onnx, pki, tmp_path, given, named):
    from dlkit.cli import cli

    files = {**{k: str(v) for k, v in pki.items()}, "missing": str(tmp_path / "missing.pem")}
    result = CliRunner().invoke(cli, ["serve", str(tiny_onnx), *(g.format(**files) for g in given), "--port",
                                      str(free_port())])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"Error: {named.format(**files)}") and result.stderr.count("\n") == 1, \
        result.stderr
    assert "Traceback" not in result.output and result.stdout == ""


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file: nothing is unreadable")
def test_an_unreadable_key_is_a_one_line_error(tiny_onnx, pki, tmp_path):
    from dlkit.cli import cli

    locked = tmp_path / "key.pem"
    locked.write_bytes(pki["key"].read_bytes())
    locked.chmod(0)
    result = CliRunner().invoke(cli, ["serve", str(tiny_onnx), "--tls-cert", str(pki["cert"]), "--tls-key",
                                      str(locked)])
    assert result.exit_code == 2 and result.stderr.startswith(f"Error: cannot read the TLS private key {locked}")


def _first_lines(command: list, count: int) -> list[str]:
    """The first `count` lines the server writes on stderr (warnings, then where it serves)."""
    proc = subprocess.Popen(command + ["--port", str(free_port())], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        return [proc.stderr.readline() for _ in range(count)]
    finally:
        stop(proc)


def test_a_token_beyond_loopback_over_plain_http_warns_once(tiny_onnx, pki):
    plain = _first_lines(dlkit_serve(tiny_onnx, "--host", "0.0.0.0", "--token", "secret"), 2)
    assert plain[0].startswith("warning: serving on 0.0.0.0 with a token over plain HTTP") and "--tls-cert" in \
        plain[0], plain
    assert plain[1].startswith("serving tiny on http://0.0.0.0:"), plain  # one warning, then the server
    tls = _first_lines(dlkit_serve(tiny_onnx, "--host", "0.0.0.0", "--token", "secret", "--tls-cert", pki["cert"],
                                   "--tls-key", pki["key"]), 1)
    assert tls[0].startswith("serving tiny on https://0.0.0.0:"), tls  # no warning with TLS


def test_a_bundle_serves_https_with_the_files_from_its_environment(tiny_onnx, pki, tmp_path):
    """A serve bundle's serve.py takes the token and the TLS files from the environment, as its systemd unit passes
    them from serve.env; a key that does not match is refused before the model loads."""
    import dlkit

    folder = tmp_path / "bundle"
    dlkit.bundle(tiny_onnx, folder, target="rpi5", serve=True)
    unit = (folder / "dlkit-serve.service.in").read_text()
    assert "EnvironmentFile=-@BUNDLE@/serve.env" in unit and "serve.py --port 8000 $DLKIT_SERVE_ARGS" in unit
    assert "--tls-cert" in (folder / "README.md").read_text()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the bundled dlkit_runtime, as on the device
    env.update(DLKIT_SERVE_TOKEN="secret", DLKIT_SERVE_TLS_CERT=str(pki["cert"]), DLKIT_SERVE_TLS_KEY=str(pki["key"]))
    with serving([sys.executable, folder / "serve.py"], env=env,
                 context=ssl.create_default_context(cafile=str(pki["ca"]))) as served:
        client = http.InferenceServerClient(f"127.0.0.1:{served.port}", ssl=True,
                                            ssl_options={"ca_certs": str(pki["ca"])})
        x = _pixels(2)
        got = _infer(client, x, headers={"Authorization": "Bearer secret"})
        np.testing.assert_allclose(got, Model(tiny_onnx).predict(x)["digit"], rtol=1e-5, atol=1e-3)  # as above
    env["DLKIT_SERVE_TLS_KEY"] = str(pki["other_key"])
    refused = subprocess.run([sys.executable, str(folder / "serve.py"), "--port", str(free_port())],
                             capture_output=True, text=True, env=env, timeout=120)
    assert refused.returncode == 2 and refused.stderr.startswith("Error: the TLS key ") and \
        refused.stderr.count("\n") == 1, refused.stderr
