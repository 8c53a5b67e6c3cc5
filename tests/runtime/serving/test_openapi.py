"""The server against its own OpenAPI description (GET /v2/openapi.json, `dlkit_runtime.serving.openapi`): every
documented path answers; schemathesis then sends each operation its examples, the coverage phase's edge cases (wrong
methods, missing and malformed parts) and fuzzed requests, and checks every answer: never a 5xx, a documented status,
the documented content type and body, 405 with Allow, 401 without the token, 4xx for what the description forbids.
The server is a real `dlkit serve` with a token and three tiny models, one of them a text model (strings in)."""

from __future__ import annotations

import copy
import json
import struct
import urllib.error
import urllib.request

import pytest

from dlkit_runtime.serving.openapi import description
from tests.runtime.serving.launch import dlkit_serve, serving
from tests.runtime.serving.text_models import text_model

schemathesis = pytest.importorskip("schemathesis", reason="the protocol fuzz needs schemathesis (the dev extra)")

TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance", "response_schema_conformance",
          "response_headers_conformance", "negative_data_rejection", "missing_required_header", "unsupported_method",
          "allow_header_conformance", "ignored_auth")
EXAMPLES = 12  # fuzzed requests per operation, besides its examples and the coverage phase's cases: ~20 s in all


@pytest.fixture(scope="module")
def served(tiny_onnx, two_input_onnx, tmp_path_factory):
    text = text_model(tmp_path_factory.mktemp("fuzz_text") / "text.onnx")
    with serving(dlkit_serve(tiny_onnx, two_input_onnx, text, "--token", TOKEN, "--max-body-mb", "1")) as server:
        yield server
    assert "Traceback" not in server.said, server.said[-3000:]


def _get(url: str, headers=None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def test_every_documented_path_answers_as_described(served):
    status, _, body = _get(served.url + "/v2/openapi.json", AUTH)
    document = json.loads(body)
    assert status == 200 and document == DOCUMENT  # what the fuzz below reads: its models' names, and the token
    assert document["paths"]["/v2/models/{name}"]["get"]["parameters"][0]["schema"]["enum"] == ["text", "tiny", "two"]
    assert _get(served.url + "/v2/openapi.json")[0] == 401  # behind the token like the rest
    gets = [p for p, item in document["paths"].items() if "get" in item]
    assert len(gets) == 11, gets  # server, health x2, openapi, metrics; metadata, ready, config, with/without version
    for path in gets:
        status, headers, body = _get(served.url + path.format(name="tiny", version="1"), AUTH)
        assert status == 200, (path, status, body[:300])
        kind = next(iter(document["paths"][path]["get"]["responses"]["200"]["content"]))
        assert headers["content-type"].startswith(kind), (path, headers["content-type"])
        if path.startswith("/v2/models/"):
            assert json.loads(body)["name"] == "tiny", (path, body[:300])


# The description the server sends for these two models and a token (the first test checks it is the one sent),
# read at import: schemathesis.pytest.from_fixture, which would fetch it from the running server, reads
# request.node._nodeid, which pytest 9 no longer has
DOCUMENT = description(["tiny", "two", "text"], token=True)
# and requests that fit the models, as examples: random ones almost never do, and the 200s must be checked too
EXAMPLES_BY_MODEL = {
    "tiny": {"inputs": [{"name": "pixels", "shape": [2, 28, 28, 1], "datatype": "FP32", "data": [0.5] * 1568}]},
    "two": {"id": "r1", "inputs": [{"name": "a", "shape": [1, 3], "datatype": "FP32", "data": [1.5, 2, 3]},
                                   {"name": "b", "shape": [1, 3], "datatype": "INT64", "data": [1, 2, 3]}],
            "outputs": [{"name": "sum", "parameters": {"binary_data": False}}]},
    "text": {"inputs": [{"name": "line", "shape": [2], "datatype": "BYTES",
                         "data": ["Before we proceed any further, hear me speak.", "Été — naïve «quoth» 🙂"]}]},
}
FUZZED = copy.deepcopy(DOCUMENT)
for _path in ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"):
    FUZZED["paths"][_path]["post"]["requestBody"]["content"]["application/json"]["examples"] = {
        name: {"value": value} for name, value in EXAMPLES_BY_MODEL.items()}
schema = schemathesis.openapi.from_dict(FUZZED, config=schemathesis.Config.from_dict({
    "seed": 26, "auth": {"openapi": {"bearer": {"bearer": TOKEN}}},
    "generation": {"max-examples": EXAMPLES, "no-shrink": True, "mode": "all"},
    "phases": {"stateful": {"enabled": False}},
    "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
}))


@schemathesis.serializer("image/bmp")
def _bmp(context, value) -> bytes:
    """A real 2x2 24-bit BMP for image/bmp bodies (schemathesis sends sample files of the other picture formats)."""
    pixels = (b"\x00\x80\xff" * 2 + b"\x00\x00") * 2
    return (b"BM" + struct.pack("<IHHI", 54 + len(pixels), 0, 0, 54)
            + struct.pack("<IiiHHIIiiII", 40, 2, 2, 1, 24, 0, len(pixels), 2835, 2835, 0, 0) + pixels)


@schema.parametrize()
def test_the_server_keeps_to_its_openapi_description(case, served):
    case.call_and_validate(base_url=served.url, timeout=30)
    assert served.proc.poll() is None  # still up
