"""The memory a model needs at run time, as `dlkit bundle --target rpi-zero2` and `dlkit inspect` report it: a fresh
process's peak resident memory, judged against the 512 MB Pi Zero 2 W's 200 MB budget."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

MB = 1024 * 1024


@pytest.fixture(scope="module")
def hungry(tmp_path_factory):
    """A tiny file whose one inference holds a 240 MB activation: (1, 1) broadcast to (1, 60M) float32, then summed."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    shape = helper.make_tensor("shape", TensorProto.INT64, [2], np.array([1, 60_000_000], np.int64))
    graph = helper.make_graph(
        [helper.make_node("Expand", ["x", "shape"], ["wide"]),
         helper.make_node("ReduceSum", ["wide"], ["y"], keepdims=1)],
        "hungry", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])], [shape])
    path = tmp_path_factory.mktemp("memory") / "hungry.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "dlkit", *map(str, args)], capture_output=True, text=True, timeout=300)


def test_bundle_for_the_zero_warns_over_its_memory_budget(hungry, tmp_path):
    proc = _cli("bundle", hungry, "-o", tmp_path / "b", "--target", "rpi-zero2", "--json")
    assert proc.returncode == 0, proc.stderr
    memory = json.loads(proc.stdout)["memory"]
    assert memory["peak_rss_bytes"] > memory["model_rss_bytes"] > 200 * MB  # the 240 MB activation, at least
    assert memory["budget_bytes"] == 200 * MB and memory["over_budget"]
    warning = [line for line in proc.stderr.splitlines() if "at run time" in line]
    assert len(warning) == 1 and "over the 200 MB a rpi-zero2 can spare of its 512 MB" in warning[0], proc.stderr
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["memory"]["over_budget"] and "over this device's budget" in (tmp_path / "b" / "README.md").read_text()


def test_a_small_model_is_within_the_budget(onnx_exports, tmp_path):
    proc = _cli("bundle", onnx_exports["mlp_digits"], "-o", tmp_path / "b", "--target", "rpi-zero2")
    assert proc.returncode == 0 and "at run time" not in proc.stderr, proc.stderr
    assert "within the rpi-zero2's 200.0 MB budget" in proc.stdout
    inspected = json.loads(_cli("inspect", onnx_exports["mlp_digits"], "--target", "rpi-zero2", "--json").stdout)
    assert 20 * MB < inspected["memory"]["peak_rss_bytes"] < 200 * MB and not inspected["memory"]["over_budget"]
    assert inspected["memory"]["pinned"]  # measured with the onnxruntime and numpy a bundle pins


def test_inspect_says_over_the_budget(hungry):
    proc = _cli("inspect", hungry, "--target", "rpi-zero2", "--no-placement")
    assert proc.returncode == 0, proc.stderr
    assert "OVER the rpi-zero2's 200.0 MB budget" in proc.stdout and proc.stderr.count("warning:") == 1


def test_the_figure_is_the_fresh_process_own(tmp_path):
    """A parent holding 400 MB does not lend its peak to the child (getrusage's ru_maxrss would: Linux carries it
    across exec)."""
    import numpy as np
    from onnx import TensorProto, helper, save

    from dlkit.core.memory import run_memory
    from dlkit_runtime import Model

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "small",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), tmp_path / "small.onnx")
    held = np.ones(400 * MB, np.uint8)  # touched: resident in this process when the child is forked
    memory = run_memory(tmp_path / "small.onnx", Model(tmp_path / "small.onnx").inputs)
    assert held.sum() == 400 * MB and memory.peak_rss_bytes < 200 * MB, memory
