"""Text models over HTTP, on a real `dlkit serve`: a Keras speaker classifier that starts with TextVectorization,
trained for a second on real Tiny Shakespeare lines and exported by `dlkit.export`, takes a BYTES input of UTF-8
strings (JSON strings, and tritonclient's binary BYTES) and answers Keras' logits; the metadata and the Triton config
show the string input; token ids sent as numbers still work; strings and ids share batches; bad text is a 4xx JSON
error and the server stays up."""

from __future__ import annotations

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from dlkit_runtime import Model
from tests.runtime.serving.launch import dlkit_serve, serving
from tests.runtime.serving.test_serve import _metric_values, _post
from tests.runtime.serving.text_models import LABELS, shakespeare_lines, text_model
from tests.speaker_text import MAX_TOKENS, SEQUENCE_LENGTH, check_sentences, keras_logits, train_speaker_model

http = pytest.importorskip("tritonclient.http", reason="the serve tests talk to the server with tritonclient")

# the server runs the exported float32 embedding average and two dense layers that Keras runs: they differ by
# summation order only (~1e-7); one token id wrong moves a logit by ~1e-2
ATOL = 1e-4


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The Keras classifier trained for ~1 s on 80% of the lines and exported; 200 sentences it has not seen (the
    held-out lines and the hard cases: empty, capitals, punctuation, unknown words, longer than the sequence)."""
    import dlkit

    model, held_out = train_speaker_model()
    path = tmp_path_factory.mktemp("text_http") / "speaker.onnx"
    dlkit.export(model, path, labels=LABELS)
    sentences = check_sentences(held_out)
    assert len(sentences) == 200
    want = keras_logits(model, sentences)
    return path, sentences, want


@pytest.fixture(scope="module")
def served(trained):
    with serving(dlkit_serve(trained[0], "--name", "speaker")) as server:
        yield server
    assert "Traceback" not in server.said, server.said[-3000:]


def _client(served):
    return http.InferenceServerClient(served.url.removeprefix("http://"))


def _strings(values, shape=None, binary=True):
    strings = http.InferInput("line", list(shape or [len(values)]), "BYTES")
    strings.set_data_from_numpy(np.array(values, dtype=object).reshape(shape or -1), binary_data=binary)
    return strings


def _infer_url(served, name="speaker"):
    return f"{served.url}/v2/models/{name}/infer"


def test_json_strings_answer_keras_logits(served, trained):
    _, sentences, want = trained
    for shape in ([200], [200, 1]):
        body = json.dumps({"inputs": [{"name": "line", "shape": shape, "datatype": "BYTES", "data": sentences}]})
        status, _, content = _post(_infer_url(served), body.encode())
        assert status == 200, content[:300]
        output = json.loads(content)["outputs"][0]
        got = np.array(output["data"], np.float32).reshape(output["shape"])
        assert got.shape == want.shape == (200, len(LABELS))
        assert float(np.abs(got - want).max()) <= ATOL
        assert (got.argmax(1) == want.argmax(1)).all()


def test_tritonclient_binary_bytes_answer_keras_logits(served, trained):
    path, sentences, want = trained
    client = _client(served)
    encoded = [s.encode("utf-8") for s in sentences]
    for values, shape, binary in ((sentences, None, True), (encoded, [200, 1], True), (sentences, None, False)):
        got = client.infer("speaker", [_strings(values, shape, binary)]).as_numpy("speaker")
        assert float(np.abs(got - want).max()) <= ATOL
    ids = http.InferInput("line", [200, SEQUENCE_LENGTH], "INT64")  # the token ids themselves still work
    ids.set_data_from_numpy(Model(path).vectorizer(sentences))
    assert float(np.abs(client.infer("speaker", [ids]).as_numpy("speaker") - want).max()) <= ATOL
    top = client.infer("speaker", [_strings(sentences[:3])],
                       outputs=[http.InferRequestedOutput("speaker", class_count=1)]).as_numpy("speaker")
    assert [int(row[0].decode().split(":")[1]) for row in top] == want[:3].argmax(1).tolist()
    assert [row[0].decode().split(":")[2] for row in top] == [LABELS[i] for i in want[:3].argmax(1)]


def test_metadata_and_config_show_the_string_input(served):
    client = _client(served)
    meta = client.get_model_metadata("speaker")
    assert meta["inputs"] == [{"name": "line", "datatype": "BYTES", "shape": [-1]}]
    assert meta["outputs"] == [{"name": "speaker", "datatype": "FP32", "shape": [-1, len(LABELS)]}]
    assert meta["parameters"]["token_ids"] == {"line": {"datatype": "INT64", "shape": [-1, SEQUENCE_LENGTH],
                                                        "vocabulary_size": MAX_TOKENS}}
    config = client.get_model_config("speaker")
    assert config["input"] == [{"name": "line", "data_type": "TYPE_STRING", "dims": [1], "reshape": {"shape": []}}]
    assert config["output"] == [{"name": "speaker", "data_type": "TYPE_FP32", "dims": [len(LABELS)]}]
    assert config["max_batch_size"] == 32


def _binary_body(values, shape=None) -> tuple[bytes, dict]:
    body, size = http.InferenceServerClient.generate_request_body([_strings(values, shape)])
    return body, {"Inference-Header-Content-Length": str(size)}


def _json_body(data, shape, datatype="BYTES") -> tuple[bytes, dict]:
    return json.dumps({"inputs": [{"name": "line", "shape": shape, "datatype": datatype, "data": data}]}).encode(), {}


@pytest.mark.parametrize("request_, status, says", [
    (_binary_body([b"Speak, speak.", b"caf\xe9 au lait"]), 400, "string 1 is not valid UTF-8 (invalid continuation"),
    (_binary_body([b"\xff\xfe\x00"]), 400, "string 0 is not valid UTF-8 (invalid start byte at byte 0)"),
    (_binary_body(["Speak, speak. " * 5000]), 413, "string 0 is 70000 bytes, over the server's limit of 65536"),
    (_json_body(["é" * 40000], [1]), 413, "string 0 is 80000 bytes, over the server's limit of 65536 bytes"),
    (b'{"inputs": [{"name": "line", "shape": [1], "datatype": "BYTES", "data": ["\\udc80"]}]}', 400, "not valid"),
    (_json_body([1, 2], [2]), 400, "needs 'data' as a list of strings (the texts)"),
    (_json_body(["a", "b", "c", "d"], [2, 2]), 400, "BYTES of shape [N] or [N, 1] holding N UTF-8 strings"),
    (_json_body([], [0]), 400, "holds no strings; send at least one"),
    (_json_body([0.5] * 12, [1, 12], "FP32"), 400, "takes BYTES [N] UTF-8 strings, or INT64 (N, 12) token ids"),
    (_json_body(["x"], [2]), 400, "has 1 strings for shape [2]"),
])
def test_bad_text_is_a_4xx_json_error_and_the_server_stays_up(served, trained, request_, status, says):
    body, headers = request_ if isinstance(request_, tuple) else (request_, {})
    code, answer_headers, content = _post(_infer_url(served), body, headers)
    kind = {k.lower(): v for k, v in answer_headers.items()}["content-type"]
    assert code == status and kind == "application/json", (code, content[:300])
    assert says in json.loads(content)["error"], content[:300]
    got = _client(served).infer("speaker", [_strings(trained[1][:5])]).as_numpy("speaker")
    assert float(np.abs(got - trained[2][:5]).max()) <= ATOL  # still up, and still right


def test_strings_and_token_ids_share_batches(tmp_path):
    """8 clients x 6 requests of 8 real lines, every other one as token ids, on a text model whose run takes about
    a millisecond: the server runs them in fewer, larger batches (its /metrics), and each client gets exactly the
    answers `Model.predict` gives for its own lines."""
    path = text_model(tmp_path / "text.onnx", hidden=1024)
    model = Model(path)
    lines = shakespeare_lines()[:48 * 8]
    batches = [lines[k * 8:(k + 1) * 8] for k in range(48)]

    def client(url, k):
        worst = 0.0
        for i in range(k * 6, k * 6 + 6):
            if i % 2:
                feed = {"name": "line", "shape": [8, 8], "datatype": "INT64",
                        "data": model.vectorizer(batches[i]).reshape(-1).tolist()}
            else:
                feed = {"name": "line", "shape": [8], "datatype": "BYTES", "data": batches[i]}
            status, _, content = _post(f"{url}/v2/models/text/infer", json.dumps({"inputs": [feed]}).encode())
            assert status == 200, content[:300]
            got = np.array(json.loads(content)["outputs"][0]["data"], np.float32).reshape(8, len(LABELS))
            worst = max(worst, float(np.abs(got - model.predict(batches[i])["speaker"]).max()))
        return worst

    with serving(dlkit_serve(path, "--threads", "1")) as server:
        with ThreadPoolExecutor(8) as pool:
            worst = max(pool.map(lambda k: client(server.url, k), range(8)))
        values = _metric_values(urllib.request.urlopen(server.url + "/metrics").read().decode(), "text")
    assert values['dlkit_requests_total{model="text",status="200"}'] == 48
    assert values['dlkit_batch_size_sum{model="text"}'] == 48 * 8
    assert values['dlkit_batch_size_count{model="text"}'] < 48, values  # some requests ran together
    assert worst <= 1e-5  # the same rows in a larger batch: float32 round-off of two 1024-term products at most
    assert "Traceback" not in server.said
