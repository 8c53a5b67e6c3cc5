"""`dlkit serve`: the real server (uvicorn + starlette) on a free loopback port, talked to with `tritonclient.http`
and with raw HTTP for what a client would never send."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from dlkit_runtime import Model
from tests.runtime.serving.launch import dlkit_serve, free_port, serving, stop

http = pytest.importorskip("tritonclient.http", reason="the serve tests talk to the server with tritonclient")


_free_port, _stop = free_port, stop


@contextmanager
def _server(*args, env=None):
    """`dlkit serve ARGS` on a free port (tests.runtime.serving.launch), as (url, process)."""
    with serving(dlkit_serve(*args), env=env) as served:
        yield served.url, served.proc


def _post(url, body: bytes, headers=None):
    request = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def _worst_json_answer(url, model_name, model, input_name, batches) -> float:
    """Posts each batch as a JSON infer request (200 expected) and returns the largest difference of an answer
    from `model.predict` on the same rows."""
    worst = 0.0
    for rows in batches:
        status, _, content = _post(f"{url}/v2/models/{model_name}/infer", _json_infer(input_name, rows))
        assert status == 200, content[:300]
        output = json.loads(content)["outputs"][0]
        expected = next(iter(model.predict(rows).values()))
        got = np.array(output["data"], np.float32).reshape(expected.shape)
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def _metric_values(text: str, model_name: str) -> dict[str, float]:
    """A model's samples from Prometheus' text format, by name with labels."""
    return {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
            if f'model="{model_name}"' in line and not line.startswith("#")}


def _json_infer(name, x, dtype="FP32"):
    return json.dumps({"inputs": [{"name": name, "shape": list(x.shape), "datatype": dtype,
                                   "data": x.reshape(-1).tolist()}]}).encode()


@pytest.fixture(scope="module")
def served(onnx_exports):
    with _server(onnx_exports["cnn"], onnx_exports["mlp_digits"], onnx_exports["char_gru"], "--max-body-mb", "1") as s:
        yield s


def test_health_metadata_and_infer_through_tritonclient(served, onnx_exports, mnist_npz):
    url, _ = served
    client = http.InferenceServerClient(url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("cnn")
    meta = client.get_model_metadata("cnn")
    assert meta["inputs"] == [{"name": "pixels", "datatype": "FP32", "shape": [-1, 28, 28, 1]}]
    assert meta["outputs"][0]["name"] == "digit" and "labels" in meta["parameters"]
    x = np.load(mnist_npz["cnn", "eval"])["pixels"][:7]
    expected = Model(onnx_exports["cnn"]).predict(x)["digit"]
    for binary in (True, False):  # tritonclient's default (the binary extension), then plain JSON
        pixels = http.InferInput("pixels", list(x.shape), "FP32")
        pixels.set_data_from_numpy(x, binary_data=binary)
        outputs = None if binary else [http.InferRequestedOutput("digit", binary_data=False)]
        got = client.infer("cnn", [pixels], outputs=outputs).as_numpy("digit")
        np.testing.assert_allclose(got, expected, atol=1e-6)  # the same model and rows; a batch of other size at most
    ids = np.random.default_rng(0).integers(0, 60, (3, 20)).astype(np.int32)
    hidden = np.zeros((3, 256), np.float32)
    inputs = [http.InferInput("x", [3, 20], "INT32"), http.InferInput("hidden", [3, 256], "FP32")]
    inputs[0].set_data_from_numpy(ids)
    inputs[1].set_data_from_numpy(hidden)
    result = client.infer("char_gru", inputs)
    reference = Model(onnx_exports["char_gru"]).predict({"x": ids, "hidden": hidden})
    for name, value in reference.items():
        np.testing.assert_allclose(result.as_numpy(name), value, atol=1e-5)


@pytest.mark.parametrize("path, body, status, says", [
    ("mlp_digits", _json_infer("pixels", np.zeros((1, 78), np.float32)), 400, "wants FP32 (N, 784), got shape [1, 78]"),
    ("mlp_digits", _json_infer("pixels", np.zeros((1, 784)), "FP64"), 400, "wants FP32 (N, 784), got FP64"),
    ("char_gru", _json_infer("x", np.zeros((1, 5), np.int32), "INT32"), 400, "missing input(s) ['hidden']"),
    ("nope", _json_infer("pixels", np.zeros((1, 784))), 404, "no model 'nope'"),
    ("cnn", b'{"inputs": [', 400, "not valid JSON"),
    ("cnn", b"[" * 10000 + b"]" * 10000, 400, "nested deeper"),
    ("mlp_digits", json.dumps({"inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "FP32",
                                           "data": [1.0] * 3}]}).encode(), 400, "has 3 values for shape [1, 784]"),
])
def test_bad_requests_get_a_4xx_json_error_and_the_server_stays_up(served, path, body, status, says):
    url, _ = served
    code, headers, content = _post(f"{url}/v2/models/{path}/infer", body)
    assert code == status and says in json.loads(content)["error"], (code, content[:300])
    assert urllib.request.urlopen(url + "/v2/health/ready").status == 200


def test_a_body_over_the_limit_is_refused_before_it_is_read(served):
    """The headers alone, declaring 2 MB against the limit of 1 MB: the answer comes before any body is sent."""
    url, _ = served
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(b"POST /v2/models/cnn/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 2097152\r\n\r\n")
        reply = b""
        while b"\r\n\r\n" not in reply or len(reply.split(b"\r\n\r\n", 1)[1]) < int(
                reply.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0]):
            chunk = conn.recv(65536)
            if not chunk:
                break
            reply += chunk
        reply = reply.decode("latin-1")
    assert reply.startswith("HTTP/1.1 413") and "over the limit of 1 MB" in reply, reply[:300]
    assert urllib.request.urlopen(url + "/v2/health/ready").status == 200


def test_malformed_requests_fuzzed_never_get_a_5xx(served):
    url, _ = served
    valid = _json_infer("pixels", np.full((2, 784), 0.5, np.float32))
    rng = np.random.default_rng(16)
    codes = []
    for _ in range(150):
        body = bytearray(valid)
        for pos in rng.integers(0, len(body), rng.integers(1, 6)):
            body[pos] = int(rng.integers(32, 127))
        codes.append(_post(f"{url}/v2/models/mlp_digits/infer", bytes(body[:int(rng.integers(1, len(body) + 1))]))[0])
    assert max(codes) < 500 and 400 in codes, sorted(set(codes))
    assert urllib.request.urlopen(url + "/v2/health/live").status == 200


def test_concurrent_clients_get_their_own_rows_in_shared_batches(served, onnx_exports, mnist_npz):
    """32 clients x 40 requests of 1-3 rows each: every answer equals Model.predict on the same rows, and the server
    ran them in batches of several requests (its /metrics)."""
    url, _ = served
    x = np.load(mnist_npz["mlp", "eval"])["pixels"]
    model = Model(onnx_exports["mlp_digits"])

    def client(k):  # tritonclient encodes and decodes; urllib sends (tritonclient's own transport is gevent's,
        rng = np.random.default_rng(k)  # which does not share a process with 32 threads)
        worst = 0.0
        for _ in range(40):
            start, count = int(rng.integers(0, len(x) - 3)), int(rng.integers(1, 4))
            rows = x[start:start + count]
            pixels = http.InferInput("pixels", list(rows.shape), "FP32")
            pixels.set_data_from_numpy(rows)
            body, size = http.InferenceServerClient.generate_request_body([pixels])
            status, headers, content = _post(f"{url}/v2/models/mlp_digits/infer", body,
                                             {"Inference-Header-Content-Length": str(size)})
            assert status == 200, content[:300]
            length = {k.lower(): v for k, v in headers.items()}.get("inference-header-content-length")
            got = http.InferenceServerClient.parse_response_body(
                content, header_length=int(length) if length else None).as_numpy("digit")
            assert got.shape == (count, 10)
            worst = max(worst, float(np.abs(got - model.predict(rows)["digit"]).max()))
        return worst

    with ThreadPoolExecutor(32) as pool:
        worst = max(pool.map(client, range(32)))
    assert worst <= 1e-5  # the same rows in a batch of another size: float32 round-off of a 2-layer MLP at most
    values = _metric_values(urllib.request.urlopen(url + "/metrics").read().decode(), "mlp_digits")
    requests = values['dlkit_requests_total{model="mlp_digits",status="200"}']
    runs = values['dlkit_batch_size_count{model="mlp_digits"}']
    assert requests >= 32 * 40 and runs <= requests and values['dlkit_batch_size_sum{model="mlp_digits"}'] >= requests
    assert values['dlkit_request_seconds_count{model="mlp_digits"}'] >= requests and 'dlkit_queue_depth{model="mlp_digits"}' in values


def _slow_model(path):
    """A MatMul of 1024 x 1024 per row: 512 rows take tens of milliseconds, long enough to fill a queue."""
    w = nh.from_array(np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32) * 0.01, "w")
    graph = h.make_graph([h.make_node("MatMul", ["x", "w"], ["m"]), h.make_node("MatMul", ["m", "w"], ["y"])], "slow",
                         [h.make_tensor_value_info("x", T.FLOAT, ["N", 1024])],
                         [h.make_tensor_value_info("y", T.FLOAT, ["N", 1024])], [w])
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), path)
    return path


def test_token_full_queue_and_sigterm(tmp_path):
    slow = _slow_model(tmp_path / "slow.onnx")
    body = json.dumps({"inputs": [{"name": "x", "shape": [512, 1024], "datatype": "FP32",
                                   "parameters": {"binary_data_size": 512 * 1024 * 4}}],
                       "parameters": {"binary_data_output": True}}).encode()
    blob = body + np.ones((512, 1024), np.float32).tobytes()
    headers = {"Inference-Header-Content-Length": str(len(body)), "Authorization": "Bearer s3cret"}
    with _server(slow, "--max-queue", "1", "--max-batch", "512", "--threads", "1",
                 env={"DLKIT_SERVE_TOKEN": "s3cret"}) as (url, proc):
        infer = f"{url}/v2/models/slow/infer"
        small = _json_infer("x", np.ones((1, 1024), np.float32))  # a 401 comes before the body is read
        assert _post(infer, small, {"Authorization": "Bearer wrong"})[0] == 401
        assert _post(infer, small)[0] == 401
        assert _post(infer, small, {"Authorization": "Bearer s3cret"})[0] == 200
        assert urllib.request.urlopen(url + "/v2/health/ready").status == 200  # probes need no token
        with pytest.raises(urllib.error.HTTPError, match="401"):
            urllib.request.urlopen(url + "/v2/models/slow")
        status, response_headers, content = _post(infer, blob, headers)
        length = {k.lower(): v for k, v in response_headers.items()}["inference-header-content-length"]
        assert status == 200 and int(length) + 512 * 1024 * 4 == len(content)  # JSON, then the output's bytes
        # one running, one waiting: the rest of 12 at once are turned away with 503 and Retry-After
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda _: _post(infer, blob, headers), range(12)))
        codes = [a[0] for a in answers]
        assert 503 in codes and 200 in codes and set(codes) <= {200, 503}, codes
        assert all({k.lower(): v for k, v in a[1].items()}.get("retry-after") == "1" for a in answers if a[0] == 503)
        # SIGTERM while a request is in flight (4096 rows: about a second of compute, sent in milliseconds): it is
        # answered, then the server exits 0
        big_head = json.dumps({"inputs": [{"name": "x", "shape": [4096, 1024], "datatype": "FP32",
                                           "parameters": {"binary_data_size": 4096 * 1024 * 4}}]}).encode()
        big = big_head + np.ones((4096, 1024), np.float32).tobytes()
        results = []
        worker = threading.Thread(target=lambda: results.append(_post(
            infer, big, {"Inference-Header-Content-Length": str(len(big_head)), "Authorization": "Bearer s3cret"})[0]))
        worker.start()
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        worker.join(timeout=120)
        assert proc.wait(timeout=120) == 0
        assert results == [200], results


def test_a_serve_bundle_serves_its_checked_model(onnx_exports, mnist_npz, tmp_path):
    """dlkit bundle --serve: serve.py, its systemd unit and the server's pinned requirements; serve.py (run here as
    the device would run it) checks the model's sha256 and answers tritonclient."""
    import dlkit
    from dlkit.core.catalogue import SERVE_REQUIREMENTS

    dlkit.bundle(onnx_exports["cnn"], tmp_path / "b", target="rpi5", serve=True)
    folder = tmp_path / "b"
    assert (folder / "serve.py").is_file() and (folder / "dlkit-serve.service.in").is_file()
    assert set(SERVE_REQUIREMENTS) <= set((folder / "requirements.txt").read_text().split())
    assert "serve.py --port 8000" in (folder / "dlkit-serve.service.in").read_text()
    assert "tritonclient" in (folder / "README.md").read_text()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for workers in ("1", "2"):  # one process, then two sharing the port
        port = _free_port()
        log = tempfile.TemporaryFile(mode="w+")
        proc = subprocess.Popen([sys.executable, str(folder / "serve.py"), "--port", str(port), "--workers", workers],
                                stdout=subprocess.DEVNULL, stderr=log, env=env)
        try:
            client = http.InferenceServerClient(f"127.0.0.1:{port}")
            for _ in range(300):
                try:
                    if client.is_server_ready():
                        break
                except Exception:  # not listening yet
                    time.sleep(0.1)
            x = np.load(mnist_npz["cnn", "eval"])["pixels"][:3]
            pixels = http.InferInput("pixels", list(x.shape), "FP32")
            pixels.set_data_from_numpy(x)
            got = client.infer("cnn", [pixels]).as_numpy("digit")
            np.testing.assert_allclose(got, Model(onnx_exports["cnn"]).predict(x)["digit"], atol=1e-6)
        finally:
            _stop(proc)
            log.seek(0)
            said = log.read()
            log.close()
        assert proc.returncode == 0, (workers, said[-2000:])
    tampered = folder / "cnn.onnx"
    data = bytearray(tampered.read_bytes())
    data[-20] ^= 1
    tampered.write_bytes(bytes(data))
    refused = subprocess.run([sys.executable, str(folder / "serve.py"), "--port", str(port)], capture_output=True,
                             text=True, env=env, timeout=60)
    assert refused.returncode == 2 and refused.stderr.startswith("Error: ") and "sha256" in refused.stderr


@pytest.mark.slow
def test_load_32_clients_x_500_requests_exact_answers_and_flat_memory(onnx_exports, mnist_npz):
    """The sample MLP and CNN together, 32 clients x 500 one-to-two-row requests: no error, every answer equal to
    Model.predict on the same rows, and the server's resident memory after the load within 48 MB of what it was
    after a warm-up (allocator arenas of 32 threads vary by a few MB; keeping each request's 16 KB body would add
    250 MB)."""
    mlp, cnn = Model(onnx_exports["mlp_digits"]), Model(onnx_exports["cnn"])
    flat = np.load(mnist_npz["mlp", "eval"])["pixels"]
    images = np.load(mnist_npz["cnn", "eval"])["pixels"]

    def rss(pid) -> int:
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) * 1024

    def client(k, requests):
        rng = np.random.default_rng(k)
        worst = 0.0
        for i in range(requests):
            name, model, data, key = (("mlp_digits", mlp, flat, "pixels") if i % 2 else ("cnn", cnn, images, "pixels"))
            start, count = int(rng.integers(0, len(data) - 2)), int(rng.integers(1, 3))
            rows = data[start:start + count]
            status, _, content = _post(f"{url}/v2/models/{name}/infer", _json_infer(key, rows))
            assert status == 200, content[:300]
            got = np.array(json.loads(content)["outputs"][0]["data"], np.float32).reshape(count, 10)
            worst = max(worst, float(np.abs(got - model.predict(rows)["digit"]).max()))
        return worst

    with _server(onnx_exports["mlp_digits"], onnx_exports["cnn"]) as (url, proc):
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda k: client(k, 30), range(32)))  # warm-up: arenas, batch shapes, the smoothed times
            before = rss(proc.pid)
            worst = max(pool.map(lambda k: client(100 + k, 500), range(32)))
        after = rss(proc.pid)
    assert worst <= 1e-5  # same rows, another batch size: float32 round-off of the MLP and CNN at most
    assert after - before <= 48 << 20, (before >> 20, after >> 20)


def test_concurrent_requests_for_a_slower_model_share_batches(tmp_path):
    """8 clients x 6 requests of 8 rows on a model whose run takes milliseconds: the server runs them in fewer,
    larger batches (its /metrics), and each client gets exactly its own rows back."""
    slow = _slow_model(tmp_path / "slow.onnx")
    model = Model(slow)
    rng = np.random.default_rng(5)
    rows = [rng.standard_normal((8, 1024)).astype(np.float32) for _ in range(48)]
    with _server(slow, "--threads", "1") as (url, _):
        with ThreadPoolExecutor(8) as pool:
            worst = max(pool.map(lambda k: _worst_json_answer(url, "slow", model, "x", rows[k * 6:(k + 1) * 6]),
                                 range(8)))
        values = _metric_values(urllib.request.urlopen(url + "/metrics").read().decode(), "slow")
    assert values['dlkit_requests_total{model="slow",status="200"}'] == 48
    assert values['dlkit_batch_size_sum{model="slow"}'] == 48 * 8
    assert values['dlkit_batch_size_count{model="slow"}'] < 48, values  # some requests ran together
    assert worst <= 1e-5  # the same rows in a larger batch: float32 round-off of two 1024-term products


def test_binding_beyond_loopback_without_a_token_warns(onnx_exports):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "dlkit", "serve", str(onnx_exports["mlp_digits"]), "--host",
                             "0.0.0.0", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        first = proc.stderr.readline()
    finally:
        _stop(proc)  # SIGTERM while it starts: it stops (a start swallowed it once)
    assert first.startswith("warning: serving on 0.0.0.0 without a token") and "DLKIT_SERVE_TOKEN" in first, first


def test_workers_share_the_port_sum_their_metrics_and_stop_cleanly(onnx_exports, mnist_npz, tmp_path):
    """--workers 2: two processes accept on one port; 16 clients x 20 requests all get their own rows; /metrics
    (from whichever worker answers) counts every request of both; SIGTERM stops both and the parent exits 0."""
    x = np.load(mnist_npz["mlp", "eval"])["pixels"]
    model = Model(onnx_exports["mlp_digits"])
    with _server(onnx_exports["mlp_digits"], "--workers", "2") as (url, proc):
        children = [int(p) for p in open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()]
        assert len(children) == 2, children

        with ThreadPoolExecutor(16) as pool:
            worst = max(pool.map(lambda k: _worst_json_answer(
                url, "mlp_digits", model, "pixels", [x[i:i + 1] for i in range(k * 20, k * 20 + 20)]), range(16)))
        values = _metric_values(urllib.request.urlopen(url + "/metrics").read().decode(), "mlp_digits")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert not any(os.path.exists(f"/proc/{pid}/status") and "zombie" not in open(f"/proc/{pid}/status").read()
                       for pid in children)
    assert worst <= 1e-5  # the same rows in a batch of another size: float32 round-off of a 2-layer MLP at most
    assert values['dlkit_requests_total{model="mlp_digits",status="200"}'] == 16 * 20


def test_a_worker_that_cannot_load_its_model_stops_the_server(tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx file")
    done = subprocess.run([sys.executable, "-m", "dlkit", "serve", str(broken), "--workers", "2", "--port",
                           str(_free_port())], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Error: " in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stdout == ""


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_busy_port_is_a_one_line_error(onnx_exports, workers):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "dlkit", "serve", str(onnx_exports["mlp_digits"]), "--port",
                               str(port), "--workers", workers], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert done.stderr.strip().splitlines()[-1] == (f"Error: cannot listen on 127.0.0.1:{port} (Address already in "
                                                    "use); choose another --port or --host")
