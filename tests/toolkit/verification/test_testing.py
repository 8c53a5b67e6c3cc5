"""dlkit.testing.assert_parity: the verify check as an assertion for users' own test suites."""

from __future__ import annotations

import pytest

from dlkit.errors import InvalidInputError, ShapeMismatchError
from dlkit.testing import assert_parity


def test_passes_and_returns_the_result(onnx_exports, cnn_int8, mnist_npz):
    result = assert_parity(onnx_exports["cnn"], cnn_int8, mnist_npz["cnn", "eval"], max_samples=1000)
    assert result.passed and result.num_samples == 1000
    assert result.candidates[0].outputs[0].top1_agreement >= 0.99


def test_fails_naming_each_figure(onnx_exports, cnn_damaged, mnist_npz):
    with pytest.raises(AssertionError) as info:
        assert_parity(onnx_exports["cnn"], cnn_damaged, mnist_npz["cnn", "eval"], max_samples=1000)
    message = str(info.value)
    assert "top1_agreement" in message and "accuracy_drop" in message and cnn_damaged.name in message


def test_atol_only(onnx_exports, cnn_int8):
    assert_parity(onnx_exports["cnn"], onnx_exports["cnn"], random=64, atol=0.0)
    with pytest.raises(AssertionError, match="max_abs_error .* above the limit 1e-06"):
        assert_parity(onnx_exports["cnn"], cnn_int8, random=64, atol=1e-6, min_agreement=None)


def test_bad_input_is_an_error_not_a_failed_assertion(onnx_exports, tmp_path):
    with pytest.raises(InvalidInputError):
        assert_parity(onnx_exports["cnn"], onnx_exports["cnn"], tmp_path / "missing.npz")
    assert issubclass(ShapeMismatchError, Exception) and not issubclass(ShapeMismatchError, AssertionError)
