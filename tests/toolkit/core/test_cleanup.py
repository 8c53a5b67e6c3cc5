"""dlkit's own graph folds (`dlkit.core.graph_cleanup`), each checked by running the graph before and after in onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from dlkit.core import graph_cleanup as cleanup
from dlkit.quantization import int8_layout


def _model(nodes, inputs, outputs, inits=()):
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, list(inits)),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _copy(model):
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def _run(model, feeds):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def _wrap_model(offset_when_negative: int):
    """Gather(table, where(i < 0, i + k, i)): Keras's Embedding lookup when k is the table's size."""
    table = np.arange(10 * 3, dtype=np.float32).reshape(10, 3)
    nodes = [
        helper.make_node("Less", ["i", "zero"], ["negative"]),
        helper.make_node("Add", ["i", "k"], ["shifted"]),
        helper.make_node("Where", ["negative", "shifted", "i"], ["index"]),
        helper.make_node("Gather", ["table", "index"], ["y"], axis=0),
    ]
    inits = [numpy_helper.from_array(table, "table"), numpy_helper.from_array(np.array(0, np.int32), "zero"),
             numpy_helper.from_array(np.array(offset_when_negative, np.int32), "k")]
    return _model(nodes, [helper.make_tensor_value_info("i", TensorProto.INT32, ["N", "T"])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "T", 3])], inits)


@pytest.mark.parametrize("k, dropped", [(10, True), (3, False)])
def test_index_wrap_dropped_only_when_it_changes_nothing(k, dropped):
    model = _wrap_model(k)
    changed, steps = cleanup.simplify(_copy(model))
    assert any("negative-index wrap" in s for s in steps) == dropped
    ops = [n.op_type for n in changed.graph.node]
    assert (ops == ["Gather"]) == dropped, ops
    # every in-range index, negative ones included (k=3 maps -1 to 2: a different row, so that wrap stays)
    i = np.arange(-10, 10, dtype=np.int32).reshape(4, 5)
    before, after = _run(model, {"i": i})[0], _run(changed, {"i": i})[0]
    assert np.array_equal(before, after)


def _dense_on_sequence(second_shape_tail):
    """Reshape(-1, K) -> MatMul(K, M) -> Reshape(concat(shape(x)[:2], tail)): a Keras Dense on (N, T, K)."""
    weight = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    nodes = [
        helper.make_node("Reshape", ["x", "flat"], ["x2"]),
        helper.make_node("MatMul", ["x2", "w"], ["y2"]),
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "lead"], ["dims"], axis=0),
        helper.make_node("Concat", ["dims", "tail"], ["target"], axis=0),
        helper.make_node("Reshape", ["y2", "target"], ["y"]),
    ]
    inits = [numpy_helper.from_array(np.array([-1, 4], np.int64), "flat"), numpy_helper.from_array(weight, "w"),
             numpy_helper.from_array(np.array([0, 1], np.int64), "lead"),
             numpy_helper.from_array(np.array(second_shape_tail, np.int64), "tail")]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "T", 4])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)


@pytest.mark.parametrize("tail, merged", [([6], True), ([3, 2], False)])
def test_dense_on_sequence_becomes_one_matmul(tail, merged):
    model = _dense_on_sequence(tail)
    changed, steps = cleanup.simplify(_copy(model))
    ops = [n.op_type for n in changed.graph.node]
    assert (ops == ["MatMul"]) == merged, ops
    assert any("became one MatMul" in s for s in steps) == merged
    x = np.random.default_rng(1).normal(size=(2, 7, 4)).astype(np.float32)
    before, after = _run(model, {"x": x})[0], _run(changed, {"x": x})[0]
    assert before.shape == after.shape and np.abs(before - after).max() <= 1e-6


def _pool_model(kernel, strides, pads=(0, 0, 0, 0), count_include_pad=0):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, None, None])
    pool = helper.make_node("AveragePool", ["x"], ["y"], name="pool", kernel_shape=kernel, strides=strides,
                            pads=list(pads), count_include_pad=count_include_pad)
    model = helper.make_model(helper.make_graph([pool], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("kernel, strides, pads, rewritten", [
    ((2, 2), (2, 2), (0, 0, 0, 0), True),
    ((4, 2), (4, 2), (0, 0, 0, 0), True),
    ((3, 3), (2, 2), (0, 0, 0, 0), False),   # overlapping windows
    ((2, 2), (2, 2), (1, 1, 1, 1), False),   # padding: the pool divides by the taps inside
])
def test_average_pool_to_depthwise_conv_computes_the_same(kernel, strides, pads, rewritten):
    model = _pool_model(kernel, strides, pads)
    changed = onnx.ModelProto()
    changed.CopyFrom(model)
    steps = int8_layout.average_pools_as_convolutions(changed)
    assert bool(steps) == rewritten
    assert [n.op_type for n in changed.graph.node] == (["Conv"] if rewritten else ["AveragePool"])
    onnx.checker.check_model(changed, full_check=True)
    x = np.random.default_rng(0).normal(size=(2, 3, 8, 8)).astype(np.float32)
    run = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
           for m in (model, changed)]
    assert run[0].shape == run[1].shape and np.abs(run[0] - run[1]).max() <= 1e-6


def test_index_wrap_of_a_narrow_int_source_is_left_alone():
    """Gather takes int32/int64 indices only: a wrap that starts from an int16 tensor is kept as it is."""
    model = _wrap_model(10)
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.INT16
    model.graph.node.insert(0, helper.make_node("Cast", ["i"], ["i32"], to=TensorProto.INT32))
    for node in model.graph.node[1:]:
        node.input[:] = ["i32" if name == "i" else name for name in node.input]
    changed, steps = cleanup.simplify(_copy(model))
    i = np.arange(-10, 10, dtype=np.int16).reshape(4, 5)
    assert np.array_equal(_run(model, {"i": i})[0], _run(changed, {"i": i})[0])
    assert not any("negative-index wrap" in s for s in steps)
    assert [n.op_type for n in changed.graph.node] == [n.op_type for n in model.graph.node]


def test_unnamed_pools_get_their_own_weights():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 2, 2])
    nodes = [helper.make_node("AveragePool", ["x"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("AveragePool", ["p"], ["y"], kernel_shape=[2, 2], strides=[2, 2])]
    model = _model(nodes, [x], [y])
    changed = _copy(model)
    assert len(int8_layout.average_pools_as_convolutions(changed)) == 2
    names = [t.name for t in changed.graph.initializer]
    assert len(set(names)) == 2
    data = np.random.default_rng(2).normal(size=(2, 3, 8, 8)).astype(np.float32)
    assert np.abs(_run(model, {"x": data})[0] - _run(changed, {"x": data})[0]).max() <= 1e-6


@pytest.mark.parametrize("attrs", [{"ceil_mode": 1}, {"auto_pad": "SAME_UPPER"}, {"count_include_pad": 1}])
def test_pools_the_conv_would_not_match_are_left_alone(attrs):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 7, 7])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    pads = {} if "auto_pad" in attrs else {"pads": [0, 0, 1, 1] if "count_include_pad" in attrs else [0, 0, 0, 0]}
    pool = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2], **pads, **attrs)
    model = _model([pool], [x], [y])
    changed = _copy(model)
    assert int8_layout.average_pools_as_convolutions(changed) == []
    assert [n.op_type for n in changed.graph.node] == ["AveragePool"]


def test_pruning_keeps_initializers_listed_as_inputs():
    """Old exporters list initializers among the inputs; dropping one would make that input required."""
    model = _dense_on_sequence([6])
    extra = numpy_helper.from_array(np.zeros(3, np.float32), "unused_default")
    model.graph.initializer.append(extra)
    model.graph.input.append(helper.make_tensor_value_info("unused_default", TensorProto.FLOAT, [3]))
    changed, _ = cleanup.simplify(_copy(model))
    required = lambda m: {i.name for i in m.graph.input} - {t.name for t in m.graph.initializer}  # noqa: E731
    assert required(changed) == required(model) == {"x"}
    x = np.ones((1, 2, 4), np.float32)
    assert np.abs(_run(model, {"x": x})[0] - _run(changed, {"x": x})[0]).max() <= 1e-6
