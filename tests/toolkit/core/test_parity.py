"""dlkit.core.parity: the figures on arrays whose answers are known by construction, and the sample-data checks."""

from __future__ import annotations

import numpy as np
import pytest

from dlkit.errors import InvalidInputError, ShapeMismatchError
from dlkit.core.datasources import open_data
from dlkit.core.parity import compare, fit_array, random_inputs
from dlkit.core.tensors import TensorInfo, parse_input_spec


def test_compare_figures():
    ref = {"y": np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)}
    got = {"y": ref["y"] + np.array([[0.5, 0.0], [0.0, -0.25]], np.float32)}
    (fig,) = compare(ref, got)
    assert fig.max_abs_error == pytest.approx(0.5)
    assert fig.mean_abs_error == pytest.approx(0.75 / 4)
    expected_cos = float(ref["y"].ravel() @ got["y"].ravel() / np.linalg.norm(ref["y"]) / np.linalg.norm(got["y"]))
    assert fig.cosine_similarity == pytest.approx(expected_cos)
    (same,) = compare(ref, ref)
    assert same.max_abs_error == 0.0 and same.cosine_similarity == pytest.approx(1.0)


def test_compare_mismatched_names_and_shapes():
    with pytest.raises(ShapeMismatchError, match="reference has \\['a'\\], candidate has \\['b'\\]"):
        compare({"a": np.zeros(2)}, {"b": np.zeros(2)})
    with pytest.raises(ShapeMismatchError, match="shape \\(3,\\) in the candidate, \\(2,\\)"):
        compare({"a": np.zeros(2)}, {"a": np.zeros(3)})


def test_random_inputs_respect_dtype_and_range():
    infos = (TensorInfo("tokens", "int32", (None, None)), TensorInfo("x", "float32", (None, 3)))
    data = random_inputs(infos, 5, int_high=7)
    assert data["tokens"].dtype == np.int32 and data["tokens"].shape == (5, 16)
    assert data["tokens"].min() >= 0 and data["tokens"].max() < 7
    assert data["x"].dtype == np.float32 and data["x"].shape == (5, 3) and 0 <= data["x"].min() < 1


def test_fit_array_messages():
    info = TensorInfo("pixels", "float32", (None, 28, 28, 1))
    with pytest.raises(InvalidInputError, match=r"x\[None\]"):
        fit_array(np.zeros((28, 28, 1)), info, source="a.npy")
    with pytest.raises(InvalidInputError, match=r"got complex64 \(2, 28, 28, 1\).*\(in a.npy\)"):
        fit_array(np.zeros((2, 28, 28, 1), np.complex64), info, source="a.npy")
    # float64 -> float32 is the same kind: accepted and cast
    assert fit_array(np.zeros((2, 28, 28, 1)), info, source="a.npy").dtype == np.float32


def test_npz_samples_by_input_name(tmp_path):
    infos = (TensorInfo("a", "float32", (None, 2)), TensorInfo("b", "int32", (None,)))
    path = tmp_path / "s.npz"
    np.savez(path, a=np.ones((4, 2), np.float32), b=np.arange(4, dtype=np.int32))
    data = open_data(path, infos).take(0, 3)
    assert data["a"].shape == (3, 2) and list(data["b"]) == [0, 1, 2]
    np.savez(path, a=np.ones((4, 2), np.float32))
    with pytest.raises(InvalidInputError, match=r"no array for input\(s\) \['b'\]"):
        open_data(path, infos)


def test_parse_input_spec():
    assert parse_input_spec("tokens:int32[N,100]") == TensorInfo("tokens", "int32", (None, 100))
    assert parse_input_spec("x:float32[1,T,3]") == TensorInfo("x", "float32", (1, "T", 3))
    for bad in ("x", "x:float32", "x:notatype[1]"):
        with pytest.raises(InvalidInputError):
            parse_input_spec(bad)
