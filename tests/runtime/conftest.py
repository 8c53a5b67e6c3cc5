"""Fixtures of the runtime's tests: ONNX files built once per session."""

from __future__ import annotations

import pytest

from tests.runtime import models


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory):
    return models.tiny_classifier(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def two_input_onnx(tmp_path_factory):
    return models.two_inputs(tmp_path_factory.mktemp("two"))


@pytest.fixture(scope="session")
def cnn_onnx(tmp_path_factory):
    return models.exported("cnn", tmp_path_factory)
