"""`dlkit.bench`: fields, units and errors (timings are checked for sanity only, never for speed)."""

from __future__ import annotations

import json

import pytest

import dlkit
from dlkit.errors import InvalidInputError
from tests.runtime import models

TRAINED = models.TRAINED


@pytest.fixture(scope="module")
def cnn_onnx(tmp_path_factory):
    return models.exported("cnn", tmp_path_factory)


def test_bench_fields(cnn_onnx):
    result = dlkit.bench(cnn_onnx, (1, 4), threads=1, runs=5, warmup=1)
    assert result.providers == ("cpu",) and result.threads == 1
    assert result.cold_start_ms == pytest.approx(result.load_ms + result.first_run_ms, abs=1e-3)
    assert [t.batch_size for t in result.timings] == [1, 4]
    for t in result.timings:
        assert t.runs == 5 and 0 < t.p50_ms <= t.p90_ms <= t.p99_ms
        assert t.throughput_per_s == pytest.approx(t.batch_size / (t.p50_ms / 1000), rel=1e-2)
    assert result.peak_rss_bytes > 10 * 2**20  # an interpreter with numpy and onnxruntime is far above 10 MB
    assert result.compare == () and result.keras_ratio == {}
    json.dumps(result.to_dict())


def test_bench_compare_with_keras(cnn_onnx):
    result = dlkit.bench(cnn_onnx, (2,), threads=1, runs=3, warmup=1, compare=TRAINED / "cnn.keras")
    assert [t.batch_size for t in result.compare] == [2]
    assert result.keras_ratio[2] == pytest.approx(result.compare[0].p50_ms / result.timings[0].p50_ms, rel=1e-2)
    assert result.to_dict()["keras_ratio"] == {"2": result.keras_ratio[2]}


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_sizes": ()}, "batch sizes must be positive integers"),
    ({"batch_sizes": (0,)}, "batch sizes must be positive integers, got \\[0\\]"),
    ({"runs": 0}, "runs must be >= 1"),
    ({"compare": "nope.keras"}, "--compare model 'nope.keras' does not exist"),
])
def test_bench_bad_arguments(cnn_onnx, kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        dlkit.bench(cnn_onnx, **kwargs)
