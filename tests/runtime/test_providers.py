"""Providers: short names, fallback with a warning on this CPU-only machine, strict mode, what really runs."""

from __future__ import annotations

import warnings

import numpy as np
import onnxruntime as ort
import pytest

from dlkit_runtime import InvalidInputError, Model, ProviderError, ProviderWarning
from dlkit_runtime import providers as P

pytestmark = pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(),
                                reason="these tests expect a CPU-only onnxruntime")


def test_cuda_warns_and_runs_on_cpu(tiny_onnx):
    with pytest.warns(ProviderWarning, match="'cuda' is not in this onnxruntime.*onnxruntime-gpu.*using 'cpu' instead"):
        model = Model(tiny_onnx, providers=["cuda", "cpu"])
    assert model.providers == ("cpu",)
    assert model.skipped_providers == ("cuda",)
    assert model.predict(np.zeros((1, 28, 28, 1), np.float32))["digit"].shape == (1, 10)


def test_cuda_strict_fails_clearly(tiny_onnx):
    with pytest.raises(ProviderError, match="'cuda' is not in this onnxruntime.*pip install onnxruntime-gpu"):
        Model(tiny_onnx, providers="cuda,cpu", strict=True)


def test_next_available_one_is_named():
    with pytest.warns(ProviderWarning) as record:
        chosen, skipped = P.resolve(["tensorrt", "cuda", "cpu"], ["CPUExecutionProvider"])
    assert [str(w.message).rsplit("; ", 1)[-1] for w in record] == ["using 'cpu' instead"] * 2
    assert chosen == [("CPUExecutionProvider", {})] and skipped == ("tensorrt", "cuda")


def test_cpu_only_gives_no_warning(tiny_onnx):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Model(tiny_onnx, providers="cpu").providers == ("cpu",)


def test_default_is_what_is_installed(tiny_onnx):
    assert Model(tiny_onnx).providers == ("cpu",)


def test_unknown_name(tiny_onnx):
    with pytest.raises(InvalidInputError, match="unknown execution provider 'gpu'; use one of: cpu, cuda, tensorrt"):
        Model(tiny_onnx, providers="gpu")


def test_long_names_and_options():
    available = list(P.SHORT_NAMES.values())
    chosen, _ = P.resolve(["TensorrtExecutionProvider", "xnnpack", "CUDA"], available, threads=4, device_id=1,
                          fp16=True, cache_dir="/tmp/trt")
    assert chosen == [
        ("TensorrtExecutionProvider", {"device_id": 1, "trt_fp16_enable": True, "trt_engine_cache_enable": True,
                                       "trt_engine_cache_path": "/tmp/trt"}),
        ("XnnpackExecutionProvider", {"intra_op_num_threads": 4}),
        ("CUDAExecutionProvider", {"device_id": 1}),
        ("CPUExecutionProvider", {}),
    ]


def test_session_options(tiny_onnx, tmp_path):
    optimized = tmp_path / "tiny.opt.onnx"
    model = Model(tiny_onnx, providers="cpu", threads=1, spinning=False, optimization="basic",
                  optimized_path=optimized, memory_arena=False)
    options = model.session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert not options.enable_cpu_mem_arena
    assert optimized.is_file()
    assert Model(optimized, optimization="disable").predict(np.zeros((1, 28, 28, 1), np.float32))["digit"].shape == (1, 10)


def test_bad_options(tiny_onnx):
    with pytest.raises(InvalidInputError, match="threads must be a positive integer, got 0"):
        Model(tiny_onnx, threads=0)
    with pytest.raises(InvalidInputError, match="optimization 'max' is not one of disable, basic, extended, all"):
        Model(tiny_onnx, optimization="max")
