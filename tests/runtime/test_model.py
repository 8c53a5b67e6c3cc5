"""`Model` on the exported sample CNN and tiny graphs: outputs, metadata, batches, classes, threads, light imports."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading

import numpy as np
import pytest

from dlkit_runtime import InvalidInputError, Model, Prediction
from dlkit_runtime.datafiles import read_inputs, write_outputs
from tests.runtime.models import DIGITS


@pytest.fixture(scope="module")
def cnn(cnn_onnx):
    return Model(cnn_onnx, providers="cpu")


@pytest.fixture(scope="module")
def digits(mnist_test):
    from sample_models import datasets

    images, labels = mnist_test
    return datasets.as_cnn_input(images[:512]), labels[:512]


def test_tensors_and_metadata(cnn):
    assert [i.to_dict() for i in cnn.inputs] == [{"name": "pixels", "dtype": "float32", "shape": ["N", 28, 28, 1]}]
    assert [(o.name, o.dtype, o.shape[1:]) for o in cnn.outputs] == [("digit", "float32", (10,))]
    assert cnn.labels == tuple(DIGITS)
    assert cnn.metadata["input_layout"] == {"pixels": "NHWC"}
    assert cnn.metadata["framework"].startswith("keras")
    assert cnn.metadata["parity"]["atol"] == pytest.approx(1e-4)


def test_predict_on_real_mnist(cnn, digits):
    x, labels = digits
    probs = cnn.predict(x)["digit"]
    assert probs.shape == (512, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)  # softmax output, float32 rounding
    assert (probs.argmax(axis=1) == labels).mean() > 0.95  # the trained CNN scores ~99% on MNIST
    np.testing.assert_array_equal(cnn(x)["digit"], probs)


def test_predict_batches_matches_one_call(cnn, digits):
    x, _ = digits
    whole = cnn.predict(x)["digit"]
    sliced = np.concatenate([b["digit"] for b in cnn.predict_batches(x[:100], batch_size=32)])
    streamed = np.concatenate([b["digit"] for b in cnn.predict_batches(iter(x[:100]), batch_size=32)])
    as_dicts = np.concatenate([b["digit"] for b in cnn.predict_batches(({"pixels": s} for s in x[:70]), 64)])
    # same kernels, different batch sizes: equal to float32 rounding
    np.testing.assert_allclose(sliced, whole[:100], atol=1e-6)
    np.testing.assert_allclose(streamed, whole[:100], atol=1e-6)
    np.testing.assert_allclose(as_dicts, whole[:70], atol=1e-6)
    with pytest.raises(InvalidInputError, match="batch_size must be a positive integer, got 0"):
        next(cnn.predict_batches(x, batch_size=0))


def test_classify_uses_labels(cnn, digits):
    x, labels = digits
    top = cnn.classify(x[:4], top_k=3)
    assert [len(row) for row in top] == [3] * 4
    assert [row[0].label for row in top] == [str(v) for v in labels[:4]]
    assert all(row[0].score >= row[1].score >= row[2].score for row in top)
    assert isinstance(top[0][0], Prediction) and json.dumps(top[0][0].to_dict())


def test_classify_without_labels_and_errors(two_input_onnx, tiny_onnx):
    model = Model(two_input_onnx)
    top = model.classify({"a": np.array([[0.0, 5.0, 1.0]], np.float32), "b": np.zeros((1, 3), np.int64)}, top_k=9)
    assert [(p.index, p.label, p.score) for p in top[0]] == [(1, "1", 5.0), (2, "2", 1.0), (0, "0", 0.0)]
    # a file made elsewhere does not say what its values are: "score", never called a probability
    assert model.output_kind() == "score" and top[0][0].to_dict() == {"index": 1, "label": "1", "score": 5.0}
    with pytest.raises(InvalidInputError, match="unknown output\\(s\\) 'logits'; the model's outputs are 'digit'"):
        Model(tiny_onnx).predict(np.zeros((1, 28, 28, 1), np.float32), outputs=["logits"])


def test_other_metadata_kept(tiny_onnx):
    meta = Model(tiny_onnx).metadata
    assert meta["preprocessing"] == {"scale": pytest.approx(1 / 255)} and meta["author"] == "tests"


def test_bad_model_files(tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist or is not a file"):
        Model(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(InvalidInputError, match="onnxruntime cannot load '.*junk.onnx'"):
        Model(junk)


def test_shared_between_threads(cnn, digits):
    """8 threads x 1,000 runs on one Model equal serial runs (same batch size, same kernels: bit-identical)."""
    x, _ = digits
    samples = [x[i:i + 1] for i in range(64)]
    serial = [cnn.predict(s)["digit"] for s in samples]
    failures, errors = [], []

    def work(offset):
        try:
            for i in range(1000):
                k = (i + offset) % len(samples)
                if not np.array_equal(cnn.predict(samples[k])["digit"], serial[k]):
                    failures.append(k)
        except Exception as err:  # surfaced below: an exception in a thread would not fail the test
            errors.append(err)

    threads = [threading.Thread(target=work, args=(t * 7,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and not failures


def test_datafiles_roundtrip(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((2, 3)))
    np.savez(tmp_path / "x.npz", a=np.ones(2), b=np.zeros(2))
    assert read_inputs(tmp_path / "x.npy").shape == (2, 3)
    assert set(read_inputs(tmp_path / "x.npz")) == {"a", "b"}
    (tmp_path / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(InvalidInputError, match="can feed only a model with one input"):
        read_inputs(tmp_path / "x.png")
    write_outputs(tmp_path / "out.npz", {"y": np.arange(3)})
    np.testing.assert_array_equal(np.load(tmp_path / "out.npz")["y"], np.arange(3))


@pytest.mark.parametrize("name, match", [
    ("photo.jpg", "does not exist; give a .npy, .npz or image file"),
    ("missing.npy", "does not exist; give a .npy, .npz or image file"),
    ("data.csv", "is not .npy, .npz or an image (.png, .jpg"),
])
def test_datafiles_errors(tmp_path, name, match):
    (tmp_path / "data.csv").write_text("1,2")
    with pytest.raises(InvalidInputError, match=re.escape(match)):
        read_inputs(tmp_path / name)


def test_running_stays_light(cnn_onnx):
    """Importing dlkit_runtime and running a model loads none of the export stack, nor dlkit (fresh interpreter)."""
    script = (f"import numpy as np, sys, json\nfrom dlkit_runtime import Model\n"
              f"m = Model({str(cnn_onnx)!r})\nm.predict(np.zeros((2, 28, 28, 1), np.float32))\n"
              "m.classify(np.zeros((1, 28, 28, 1), np.float32))\nprint(json.dumps(sorted(sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    roots = {m.split(".")[0] for m in json.loads(proc.stdout.strip().splitlines()[-1])}
    assert not roots & {"tensorflow", "keras", "tf2onnx", "onnx", "onnxslim", "dlkit"}
    assert proc.stderr == ""  # onnxruntime's own logging is off
