"""Pictures over HTTP and the rest of Triton's HTTP surface, on the real `dlkit serve` of the reference photo model
(MobileNetV2, 4 classes, labels in its metadata): JPEG bytes in a BYTES input (tritonclient's binary form and base64
in JSON) and as a whole image/jpeg body (real curl), the classification extension, the model configuration,
versioned paths, and the limits and errors (413 before decoding, 400, 404 and 405 as JSON)."""

from __future__ import annotations

import base64
import json
import struct
import subprocess
import sys
import urllib.error
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from dlkit_runtime import Model
from dlkit_runtime.datafiles import read_inputs
from tests.conftest import PHOTOS
from tests.runtime.serving.test_serve import _post, _server

http = pytest.importorskip("tritonclient.http", reason="the serve tests talk to the server with tritonclient")
pytest.importorskip("PIL", reason="the server decodes JPEG with Pillow")
from tritonclient.utils import InferenceServerException  # noqa: E402

CLASSES = ("bird", "flower", "fruit_veg", "mammal")
JPEGS = [PHOTOS / "test" / c / "0003.jpg" for c in CLASSES]  # one photo of each class


@pytest.fixture(scope="module")
def photo_server(photo_onnx_file):
    with _server(photo_onnx_file, "--name", "photo") as (url, proc):
        yield url, proc


@pytest.fixture(scope="module")
def cli_top3(photo_onnx_file) -> dict[Path, list[dict]]:
    """`dlkit run MODEL -i photo.jpg --json --top-k 3` for each photo: what the server must agree with."""
    found = {}
    for jpeg in JPEGS:
        done = subprocess.run([sys.executable, "-m", "dlkit", "run", str(photo_onnx_file), "-i", str(jpeg), "--json",
                               "--top-k", "3"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        found[jpeg] = json.loads(done.stdout)["top_k"][0]
    return found


def _client(url: str):
    return http.InferenceServerClient(url.removeprefix("http://"))


def _classes(strings) -> list[tuple[float, int, str]]:
    """Triton's "score:index:label" strings, parsed."""
    parsed = []
    for raw in strings:
        score, index, label = (raw.decode() if isinstance(raw, bytes) else raw).split(":", 2)
        parsed.append((float(score), int(index), label))
    return parsed


def _png_header(width: int, height: int) -> bytes:
    """A PNG of 80-odd bytes whose IHDR says width x height RGB (decoded, it would take width*height*3 bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + chunk(b"IEND", b""))


def _json(inputs: list, **extra) -> bytes:
    return json.dumps({"inputs": inputs, **extra}).encode()


def _binary(inputs: list, blob: bytes) -> tuple[bytes, dict]:
    """A request in the binary tensor data extension: its JSON, then `blob`; the header that says where it splits."""
    head = _json(inputs)
    return head + blob, {"Inference-Header-Content-Length": str(len(head))}


def _peak_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) * 1024


def test_tritonclient_bytes_jpegs_with_class_count_agree_with_dlkit_run(photo_server, photo_onnx_file, cli_top3):
    """Four JPEGs in one BYTES input (tritonclient's binary form), class_count=3, model_version="1": per photo,
    three "score:index:label" strings, best first, whose classes and scores are `dlkit run photo.jpg`'s."""
    url, _ = photo_server
    client = _client(url)
    pictures = http.InferInput("image", [len(JPEGS)], "BYTES")
    pictures.set_data_from_numpy(np.array([p.read_bytes() for p in JPEGS], dtype=object))
    result = client.infer("photo", [pictures], model_version="1",
                          outputs=[http.InferRequestedOutput("logits", class_count=3)])
    top = result.as_numpy("logits")
    assert top.shape == (len(JPEGS), 3) and result.get_output("logits")["datatype"] == "BYTES"
    for jpeg, row in zip(JPEGS, top):
        classes = _classes(row)
        expected = cli_top3[jpeg]
        assert [(i, label) for _, i, label in classes] == [(e["index"], e["label"]) for e in expected]
        # the same decoding and model: the scores differ by the strings' six decimals and float32 batch round-off
        np.testing.assert_allclose([s for s, _, _ in classes], [e["logit"] for e in expected], atol=2e-5)
        assert [s for s, _, _ in classes] == sorted((s for s, _, _ in classes), reverse=True)
    # the plain logits, all four photos in one request: Model.predict on `dlkit run`'s decoding of each file
    model = Model(photo_onnx_file)
    reference = np.concatenate([model.predict(read_inputs(p, model))["logits"] for p in JPEGS])
    np.testing.assert_allclose(client.infer("photo", [pictures]).as_numpy("logits"), reference, atol=1e-5)


def test_base64_jpeg_in_json_and_a_curl_image_body_agree_with_dlkit_run(photo_server, cli_top3):
    url, _ = photo_server
    encoded = [base64.b64encode(jpeg.read_bytes()).decode() for jpeg in JPEGS[1:3]]
    body = json.dumps({"inputs": [{"name": "image", "shape": [2, 1], "datatype": "BYTES",  # plain, then a data: URL
                                   "data": [[encoded[0]], [f"data:image/jpeg;base64,{encoded[1]}"]]}],
                       "outputs": [{"name": "logits", "parameters": {"classification": 2}}]}).encode()
    status, _, content = _post(f"{url}/v2/models/photo/infer", body, {"Content-Type": "application/json"})
    assert status == 200, content[:300]
    output = json.loads(content)["outputs"][0]
    assert output["shape"] == [2, 2] and output["datatype"] == "BYTES"
    labels = [label for _, _, label in _classes(output["data"])]
    assert labels == [e["label"] for jpeg in JPEGS[1:3] for e in cli_top3[jpeg][:2]]
    for jpeg in JPEGS:  # curl, the raw file as the body
        done = subprocess.run(["curl", "-sS", "--data-binary", f"@{jpeg}", "-H", "Content-Type: image/jpeg",
                               f"{url}/v2/models/photo/versions/1/infer?classification=1"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)["outputs"][0]
        assert answer["shape"] == [1, 1] and _classes(answer["data"])[0][2] == cli_top3[jpeg][0]["label"], done.stdout
    done = subprocess.run(["curl", "-sS", "--data-binary", f"@{JPEGS[0]}", "-H", "Content-Type: image/jpeg",
                           f"{url}/v2/models/photo/infer"], capture_output=True, text=True, timeout=60)
    logits = json.loads(done.stdout)["outputs"][0]
    assert logits["name"] == "logits" and logits["shape"] == [1, 4]
    assert int(np.argmax(logits["data"])) == cli_top3[JPEGS[0]][0]["index"]


def test_concurrent_picture_requests_are_batched_and_each_gets_its_own_answer(photo_server, photo_onnx_file):
    """8 clients x 4 requests, each one JPEG (binary BYTES): every answer is Model.predict on that photo."""
    url, _ = photo_server
    model = Model(photo_onnx_file)
    files = sorted((PHOTOS / "test").glob("*/001*.jpg"))[:32]
    reference = {p: model.predict(read_inputs(p, model))["logits"] for p in files}

    def client(k: int) -> float:
        worst = 0.0
        for path in files[k::8]:
            pictures = http.InferInput("image", [1], "BYTES")
            pictures.set_data_from_numpy(np.array([path.read_bytes()], dtype=object))
            body, size = http.InferenceServerClient.generate_request_body([pictures])
            status, headers, content = _post(f"{url}/v2/models/photo/infer", body,
                                             {"Inference-Header-Content-Length": str(size)})
            assert status == 200, content[:300]
            length = {k.lower(): v for k, v in headers.items()}.get("inference-header-content-length")
            got = http.InferenceServerClient.parse_response_body(
                content, header_length=int(length) if length else None).as_numpy("logits")
            worst = max(worst, float(np.abs(got - reference[path]).max()))
        return worst

    with ThreadPoolExecutor(8) as pool:
        worst = max(pool.map(client, range(8)))
    assert worst <= 1e-4  # one photo in a batch of others: float32 round-off through MobileNetV2's convolutions


def test_model_config_and_versioned_paths_through_tritonclient(photo_server):
    url, _ = photo_server
    client = _client(url)
    for version in ("", "1"):
        config = client.get_model_config("photo", model_version=version)
        assert config["name"] == "photo" and config["platform"] == "onnxruntime_onnx"
        assert config["max_batch_size"] == 32  # dlkit serve's --max-batch default: the model's batch axis is dynamic
        assert config["input"] == [{"name": "image", "data_type": "TYPE_FP32", "dims": [128, 128, 3],
                                    "format": "FORMAT_NHWC"}]
        assert config["output"] == [{"name": "logits", "data_type": "TYPE_FP32", "dims": [4]}]
        assert client.is_model_ready("photo", model_version=version)
        assert client.get_model_metadata("photo", model_version=version)["name"] == "photo"
    assert not client.is_model_ready("photo", model_version="2")
    with pytest.raises(InferenceServerException) as refused:
        client.get_model_config("photo", model_version="2")
    assert refused.value.status() == "404" and "version 1 only" in refused.value.message()
    pictures = http.InferInput("image", [1], "BYTES")
    pictures.set_data_from_numpy(np.array([JPEGS[0].read_bytes()], dtype=object))
    with pytest.raises(InferenceServerException, match="version 1 only") as refused:
        client.infer("photo", [pictures], model_version="2")
    assert refused.value.status() == "404"
    assert set(client.get_server_metadata()["extensions"]) >= {"classification", "model_configuration",
                                                                "binary_tensor_data"}


def test_a_20000x20000_png_header_is_413_before_any_decoding(photo_server):
    """An 80-byte PNG that says 20000x20000 (1.2 GB decoded), as an image/png body and in a BYTES input: 413 with a
    JSON error at once, the server's peak memory unchanged (no decoding), and the server answers afterwards."""
    url, proc = photo_server
    huge = _png_header(20000, 20000)
    assert len(huge) < 200
    status, _, content = _post(f"{url}/v2/models/photo/infer", JPEGS[0].read_bytes(), {"Content-Type": "image/jpeg"})
    assert status == 200, content[:300]  # the peak below includes a real decode
    before = _peak_rss(proc.pid)
    status, headers, content = _post(f"{url}/v2/models/photo/infer", huge, {"Content-Type": "image/png"})
    assert status == 413 and "20000x20000" in json.loads(content)["error"], content
    assert "40 megapixels" in json.loads(content)["error"]
    pictures = http.InferInput("image", [1], "BYTES")
    pictures.set_data_from_numpy(np.array([huge], dtype=object))
    with pytest.raises(InferenceServerException, match="over the server's limit") as refused:
        _client(url).infer("photo", [pictures])
    assert refused.value.status() == "413"
    assert _peak_rss(proc.pid) - before < 64 << 20  # decoding it would have taken 1.2 GB
    assert urllib.request.urlopen(url + "/v2/health/ready").status == 200
    status, _, content = _post(f"{url}/v2/models/photo/infer?classification=1", JPEGS[1].read_bytes(),
                               {"Content-Type": "image/jpeg"})
    assert status == 200 and json.loads(content)["outputs"][0]["shape"] == [1, 1]


def _bytes_input(shape: list, **fields) -> list:
    return [{"name": "image", "shape": shape, "datatype": "BYTES", **fields}]


@pytest.mark.parametrize("body, headers, says", [
    (b"this is not a picture", {"Content-Type": "image/jpeg"}, "is not a JPEG, PNG, WebP, GIF or BMP file"),
    (JPEGS[0].read_bytes()[:2000], {"Content-Type": "image/jpeg"}, "cannot be used"),  # cut short
    (_json(_bytes_input([1], data=[base64.b64encode(b"plain text").decode()])), {}, "is not a JPEG"),
    (_json(_bytes_input([1], data=["%%% not base64"])), {}, "is not base64"),
    (_json(_bytes_input([1, 2, 3], data=["eA=="] * 6)), {}, "or BYTES of shape [N] or [N, 1]"),
    (_json(_bytes_input([2], data=["eA=="])), {}, "has 1 strings for shape [2]"),
    (*_binary(_bytes_input([1], parameters={"binary_data_size": 9}), b"\x05\x00\x00\x00hello"), "is not a JPEG"),
    (*_binary(_bytes_input([1], parameters={"binary_data_size": 9}), b"\xff\x00\x00\x00abcde"),
     "past the end of its data"),
    (*_binary(_bytes_input([2], parameters={"binary_data_size": 9}), b"\x05\x00\x00\x00abcde"),
     "hold 1 element(s) where its shape has 2"),
    (_json(_bytes_input([1], data=["eA=="]), outputs=[{"name": "logits", "parameters": {"classification": -1}}]),
     {}, "not a positive integer"),
])
def test_bad_pictures_get_a_400_json_error_and_the_server_stays_up(photo_server, body, headers, says):
    url, _ = photo_server
    status, _, content = _post(f"{url}/v2/models/photo/infer", body, headers)
    assert status == 400 and says in json.loads(content)["error"], (status, content[:300])
    assert urllib.request.urlopen(url + "/v2/health/live").status == 200


@pytest.mark.parametrize("method, path, status, allow", [
    ("GET", "/v2/models/photo/infer", 405, "POST"),
    ("PUT", "/v2/models/photo/versions/1/infer", 405, "POST"),
    ("POST", "/v2/health/live", 405, "GET"),
    ("DELETE", "/v2/models/photo/config", 405, "GET"),
    ("GET", "/v2/nowhere", 404, None),
    ("GET", "/v2/models/nope/config", 404, None),
    ("GET", "/v2/models/photo/versions/7/ready", 404, None),
    ("POST", "/v2/models/photo/versions/7/infer", 404, None),
    ("POST", "/v2/models/nope/versions/1/infer", 404, None),
])
def test_every_404_and_405_is_json_and_a_405_says_allow(photo_server, method, path, status, allow):
    url, _ = photo_server
    request = urllib.request.Request(url + path, data=b"{}" if method in ("POST", "PUT") else None, method=method)
    try:
        urllib.request.urlopen(request, timeout=30)
        raise AssertionError(f"{method} {path} was answered 2xx")
    except urllib.error.HTTPError as err:
        code, headers, content = err.code, err.headers, err.read()
    assert code == status and headers["Content-Type"] == "application/json", (code, content)
    assert json.loads(content)["error"]
    if allow is not None:
        assert allow in [m.strip() for m in headers["Allow"].split(",")], headers["Allow"]
