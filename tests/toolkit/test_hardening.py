"""Inputs other tools produce and mistakes users make, each found by trying to break dlkit: a named problem and
fix on one line, nothing written half or over an input, and real figures where the model is valid.

The ONNX models here are built with onnx.helper the way other exporters write them (unnamed nodes, external
weights, scalar outputs), then run through the real quantizers, onnxruntime and the CLI.
"""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

import dlkit
from dlkit.cli import cli
from dlkit.errors import InvalidInputError, QuantizationError
from dlkit_runtime import Model

RNG = np.random.default_rng(7)


def _w(name, *shape):
    return nh.from_array((RNG.standard_normal(shape) * 0.3).astype(np.float32), name)


def _cnn(named: bool) -> onnx.ModelProto:
    nodes = [h.make_node("Conv", ["x", "w1"], ["c1"], pads=[1] * 4), h.make_node("Relu", ["c1"], ["r1"]),
             h.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1] * 4), h.make_node("Relu", ["c2"], ["r2"]),
             h.make_node("GlobalAveragePool", ["r2"], ["g"]), h.make_node("Flatten", ["g"], ["f"]),
             h.make_node("Gemm", ["f", "fw"], ["logits"], transB=1)]
    for i, node in enumerate(nodes):
        node.name = f"n{i}" if named else ""
    graph = h.make_graph(nodes, "cnn", [h.make_tensor_value_info("x", T.FLOAT, ["N", 3, 16, 16])],
                         [h.make_tensor_value_info("logits", T.FLOAT, ["N", 10])],
                         [_w("w1", 16, 3, 3, 3), _w("w2", 32, 16, 3, 3), _w("fw", 10, 32)])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 13)])


def _mlp(extra_nodes=(), outputs=None, inits=()) -> onnx.ModelProto:
    nodes = [h.make_node("MatMul", ["x", "w1"], ["m1"]), h.make_node("Relu", ["m1"], ["r1"]),
             h.make_node("MatMul", ["r1", "w2"], ["logits"]), *extra_nodes]
    graph = h.make_graph(nodes, "mlp", [h.make_tensor_value_info("x", T.FLOAT, ["N", 16])],
                         outputs or [h.make_tensor_value_info("logits", T.FLOAT, ["N", 10])],
                         [_w("w1", 16, 64), _w("w2", 64, 10), *inits])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


def _assert_error(result, code, match):
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and match in lines[0], result.stderr


@pytest.mark.int8
def test_unnamed_nodes_quantize_like_named_ones(tmp_path):
    """onnx.helper leaves names empty; the float stem used to exclude '' and with it every node."""
    calib = tmp_path / "calib.npy"
    np.save(calib, RNG.random((64, 3, 16, 16), dtype=np.float32))
    counts = {}
    for named in (True, False):
        path = tmp_path / f"cnn_{named}.onnx"
        onnx.save(_cnn(named), path)
        result = dlkit.quantize(path, calibration=calib)
        counts[named] = result.nodes_quantized
        assert result.parity[0].cosine_similarity > 0.99
    assert counts[False] == counts[True] >= 2  # both later convolutions and the Gemm's inputs run int8


def test_fp16_model_and_nothing_to_quantize_are_errors(tmp_path):
    fp16 = tmp_path / "half.onnx"
    model = _mlp()
    for init in model.graph.initializer:
        init.CopyFrom(nh.from_array(nh.to_array(init).astype(np.float16), init.name))
    model.graph.input[0].type.tensor_type.elem_type = T.FLOAT16
    model.graph.output[0].type.tensor_type.elem_type = T.FLOAT16
    onnx.save(model, fp16)
    with pytest.raises(InvalidInputError, match="float16 weights, not float32"):
        dlkit.quantize(fp16)
    plain = tmp_path / "mlp.onnx"
    onnx.save(_mlp(), plain)
    with pytest.raises(QuantizationError, match="nothing in .* was quantized"):
        dlkit.quantize(plain, mode="dynamic", exclude_op_types=["MatMul"])


def test_external_weights_are_counted_and_protected(tmp_path):
    folder = tmp_path / "ext"
    folder.mkdir()
    onnx.save(_mlp(), folder / "m.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
              location="m.onnx.data", size_threshold=0)
    data = folder / "m.onnx.data"
    before = data.read_bytes()
    result = dlkit.quantize(folder / "m.onnx", tmp_path / "m.int8.onnx")
    assert result.size_before_bytes == (folder / "m.onnx").stat().st_size + len(before)
    assert result.size_after_bytes < result.size_before_bytes
    with pytest.raises(InvalidInputError, match="one of the input model's files"):
        dlkit.quantize(folder / "m.onnx", data, force=True)
    assert data.read_bytes() == before
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "m.onnx").write_bytes((folder / "m.onnx").read_bytes())
    with pytest.raises(InvalidInputError, match="keeps its weights in .*m.onnx.data', which is missing"):
        dlkit.quantize(lone / "m.onnx", tmp_path / "x.onnx")


@pytest.mark.int8
def test_outputs_without_a_batch_axis_first_quantize_and_verify(tmp_path):
    """A scalar loss-like output and a (classes, N) output: compared whole, not cut per sample."""
    extra = [h.make_node("ReduceMean", ["logits"], ["mean"], keepdims=0),
             h.make_node("Transpose", ["logits"], ["by_class"], perm=[1, 0])]
    outs = [h.make_tensor_value_info("logits", T.FLOAT, ["N", 10]), h.make_tensor_value_info("mean", T.FLOAT, []),
            h.make_tensor_value_info("by_class", T.FLOAT, [10, "N"])]
    path = tmp_path / "odd.onnx"
    onnx.save(_mlp(extra, outs), path)
    x = tmp_path / "x.npy"
    np.save(x, RNG.random((300, 16), dtype=np.float32))
    result = dlkit.quantize(path, calibration=x)
    assert {p.name for p in result.parity} == {"logits", "mean", "by_class"}
    assert all(np.isfinite(p.max_abs_error) and p.cosine_similarity > 0.99 for p in result.parity)
    checked = dlkit.verify(path, [result.path], x, max_accuracy_drop=None)
    figures = {o.name: o for o in checked.candidates[0].outputs}
    assert figures["mean"].top1_agreement is None and figures["by_class"].top1_agreement is None
    # The figures are the models' own: recomputed here from both models run in verify's batches (256, then 44).
    # (No bound on the agreement itself: random weights on random inputs leave small top-2 margins, and how many
    # of them int8 flips depends on the CPU's int8 kernels.)
    data = np.load(x)
    runs = {p: [Model(p).predict(part) for part in (data[:256], data[256:])] for p in (path, result.path)}
    agree = np.concatenate([f["logits"].argmax(-1) == q["logits"].argmax(-1) for f, q in zip(*runs.values())])
    assert figures["logits"].top1_agreement == pytest.approx(agree.mean())
    mean_error = max(abs(float(f["mean"]) - float(q["mean"])) for f, q in zip(*runs.values()))
    assert figures["mean"].max_abs_error == pytest.approx(mean_error, rel=1e-5, abs=1e-7)


def test_nan_in_data_is_named_and_json_errors_are_json(tmp_path):
    path = tmp_path / "mlp.onnx"
    onnx.save(_mlp(), path)
    x = RNG.random((40, 16), dtype=np.float32)
    x[33, 2] = np.nan
    np.save(tmp_path / "x.npy", x)
    result = CliRunner().invoke(cli, ["verify", str(path), str(path), "--data", str(tmp_path / "x.npy"), "--json"])
    assert result.exit_code == 2
    payload = json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    assert payload["exit_code"] == 2 and "NaN or inf in input 'x' (sample 33)" in payload["error"]


def test_one_hot_labels_count_like_class_indices(tmp_path):
    path = tmp_path / "mlp.onnx"
    onnx.save(_mlp(), path)
    x = RNG.random((64, 16), dtype=np.float32)
    labels = RNG.integers(0, 10, 64)
    np.savez(tmp_path / "ids.npz", x=x, y=labels)
    np.savez(tmp_path / "onehot.npz", x=x, y=np.eye(10, dtype=np.float32)[labels])
    a = dlkit.verify(path, [path], tmp_path / "ids.npz").candidates[0].outputs[0]
    b = dlkit.verify(path, [path], tmp_path / "onehot.npz").candidates[0].outputs[0]
    assert a.reference_accuracy == b.reference_accuracy and a.reference_accuracy is not None


def test_regression_output_is_judged_by_errors_alone(tmp_path):
    """A (N, 4) box head with a small error but ties broken differently fails top-1 unless named."""
    box_w = _w("wb", 64, 4)
    extra = [h.make_node("MatMul", ["r1", "wb"], ["box"]), h.make_node("Softmax", ["logits"], ["prob"], axis=-1)]
    outs = [h.make_tensor_value_info("prob", T.FLOAT, ["N", 10]), h.make_tensor_value_info("box", T.FLOAT, ["N", 4])]
    reference, candidate = _mlp(extra, outs, [box_w]), onnx.ModelProto()
    candidate.CopyFrom(reference)
    weights = next(i for i in candidate.graph.initializer if i.name == "wb")
    weights.CopyFrom(nh.from_array(nh.to_array(weights) + RNG.normal(0, 0.05, (64, 4)).astype(np.float32), "wb"))
    onnx.save(reference, tmp_path / "ref.onnx")
    onnx.save(candidate, tmp_path / "cand.onnx")
    np.save(tmp_path / "x.npy", RNG.random((500, 16), dtype=np.float32))
    args = ["verify", str(tmp_path / "ref.onnx"), str(tmp_path / "cand.onnx"), "--data", str(tmp_path / "x.npy")]
    failed = CliRunner().invoke(cli, args)
    assert failed.exit_code == 4
    error = failed.stderr.strip().splitlines()[-1]  # after the progress label
    assert "output 'box': top1_agreement" in error and "'prob'" not in error and "--regression-output NAME" in error
    passed = CliRunner().invoke(cli, [*args, "--regression-output", "box", "--json"])
    assert passed.exit_code == 0, passed.output
    box = next(o for o in json.loads(passed.stdout)["candidates"][0]["outputs"] if o["name"] == "box")
    assert box["top1_agreement"] is None and 0 < box["max_abs_error"] < 1


def test_run_output_never_replaces_an_input_and_gets_normal_permissions(tmp_path):
    path = tmp_path / "mlp.onnx"
    onnx.save(_mlp(), path)
    np.savez(tmp_path / "in.npz", x=RNG.random((3, 16), dtype=np.float32))
    before = (tmp_path / "in.npz").read_bytes()
    runner = CliRunner()
    _assert_error(runner.invoke(cli, ["run", str(path), "-i", str(tmp_path / "in.npz"), "-o", str(tmp_path / "in.npz")]),
                  2, "is an input file")
    assert (tmp_path / "in.npz").read_bytes() == before
    out = tmp_path / "out.npz"
    assert runner.invoke(cli, ["run", str(path), "-i", str(tmp_path / "in.npz"), "-o", str(out)]).exit_code == 0
    _assert_error(runner.invoke(cli, ["run", str(path), "-i", str(tmp_path / "in.npz"), "-o", str(out)]), 2,
                  "exists; pass --force")
    assert runner.invoke(cli, ["run", str(path), "-i", str(tmp_path / "in.npz"), "-o", str(out), "-f"]).exit_code == 0
    umask = os.umask(0)
    os.umask(umask)
    fresh = dlkit.quantize(path, tmp_path / "q.onnx")
    for written in (out, fresh.path):
        assert stat.S_IMODE(os.stat(written).st_mode) == 0o666 & ~umask
    assert sorted(os.listdir(tmp_path)) == ["in.npz", "mlp.onnx", "out.npz", "q.onnx"]  # no temp files left


def test_values_onnxruntime_rejects_are_one_line_errors(tmp_path, capfd):
    table = nh.from_array(RNG.standard_normal((20, 4)).astype(np.float32), "table")
    graph = h.make_graph([h.make_node("Gather", ["table", "ids"], ["vectors"])], "emb",
                         [h.make_tensor_value_info("ids", T.INT64, ["N", 5])],
                         [h.make_tensor_value_info("vectors", T.FLOAT, ["N", 5, 4])], [table])
    path = tmp_path / "emb.onnx"
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), path)
    model = Model(path)
    assert model.predict(np.array([[1, 2, 3, 4, 19]]))["vectors"].shape == (1, 5, 4)
    with pytest.raises(InvalidInputError, match=r"Gather node: indices element out of data bounds, idx=25"):
        model.predict(np.array([[1, 2, 3, 4, 25]]))
    assert "sequential_executor" not in capfd.readouterr().err  # onnxruntime's own log stays quiet
    np.save(tmp_path / "ids.npy", np.array([[0, 1, 2, 3, 99]] * 40))
    with pytest.raises(InvalidInputError, match="calibration data .* does not run through the model"):
        dlkit.quantize(path, calibration=tmp_path / "ids.npy", mode="static")


def test_bundle_never_replaces_the_current_folder_or_a_non_bundle(onnx_exports, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("keep me")
    model = work / "cnn.onnx"
    model.write_bytes(onnx_exports["cnn"].read_bytes())
    monkeypatch.chdir(work)
    runner = CliRunner()
    _assert_error(runner.invoke(cli, ["bundle", "cnn.onnx", "-o", ".", "--force"]), 2, "would delete")
    _assert_error(runner.invoke(cli, ["bundle", "cnn.onnx", "-o", "..", "--force"]), 2, "would delete")
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.csv").write_text("1,2")
    _assert_error(runner.invoke(cli, ["bundle", "cnn.onnx", "-o", str(other), "--force"]), 2, "is not a dlkit bundle")
    assert sorted(os.listdir(work)) == ["cnn.onnx", "notes.txt"] and (other / "data.csv").exists()
    assert runner.invoke(cli, ["bundle", "cnn.onnx", "-o", str(tmp_path / "b")]).exit_code == 0
    assert runner.invoke(cli, ["bundle", "cnn.onnx", "-o", str(tmp_path / "b"), "--force"]).exit_code == 0


@pytest.fixture(scope="module")
def two_heads(tmp_path_factory):
    """Two LSTM heads on one sequence, each giving only its last state: two native ops in one graph."""
    import keras

    seq = keras.Input((None, 6), name="seq")
    a = keras.layers.LSTM(8, name="lstm_a")(seq)
    b = keras.layers.LSTM(5, name="lstm_b")(seq)
    model = keras.Model(seq, {"a": keras.layers.Dense(3, name="a")(a), "b": keras.layers.Dense(2, name="b")(b)})
    path = tmp_path_factory.mktemp("two_heads") / "two_heads.keras"
    model.save(path)
    return path


def test_two_native_recurrent_layers_export(two_heads, tmp_path):
    result = dlkit.export(two_heads, tmp_path / "m.onnx")
    assert sorted(result.native_recurrent) == ["lstm_a", "lstm_b"]
    assert max(p.max_abs_error for p in result.parity) < 1e-5
    graph = onnx.load(result.path).graph
    assert [n.output[0] for n in graph.node if n.op_type == "LSTM"] == ["", ""]  # unused sequences not written


def test_export_checks_renames_and_fixed_batches(two_heads, tmp_path):
    with pytest.raises(InvalidInputError, match=r"gives two outputs one name"):
        dlkit.export(two_heads, tmp_path / "m.onnx", rename=["a=b"])
    with pytest.raises(InvalidInputError, match=r"names \['nope'\], which the model does not have"):
        dlkit.export(two_heads, tmp_path / "m.onnx", rename=["nope=x"])
    with pytest.raises(InvalidInputError, match="batch_size must be a positive integer"):
        dlkit.export(two_heads, tmp_path / "m.onnx", batch_size=0)
    result = dlkit.export(two_heads, tmp_path / "b1.onnx", batch_size=1, num_samples=5, rename=["seq=tokens"])
    assert result.num_samples == 5 and result.inputs[0].name == "tokens" and result.inputs[0].shape[0] == 1


def test_a_graph_mixing_up_batch_and_time_is_refused(tmp_path):
    """tf2onnx exports this TimeDistributed so that it only works when batch == length; equal sizes in the
    check samples used to hide that."""
    import keras

    from dlkit.errors import ParityError

    seq = keras.Input((None, 4))
    model = keras.Model(seq, keras.layers.TimeDistributed(keras.layers.Dense(3))(seq))
    with pytest.raises(ParityError):
        dlkit.export(model, tmp_path / "td.onnx")
    assert not (tmp_path / "td.onnx").exists()


def test_bench_names_dynamic_sizes_the_model_rejects(tmp_path):
    graph = h.make_graph([h.make_node("Conv", ["x", "w"], ["y"])], "conv",
                         [h.make_tensor_value_info("x", T.FLOAT, ["N", 3, "H", "W"])],
                         [h.make_tensor_value_info("y", T.FLOAT, None)], [_w("w", 4, 3, 3, 3)])
    path = tmp_path / "conv.onnx"
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), path)
    with pytest.raises(InvalidInputError, match="pass --dynamic-size"):
        dlkit.bench(path, runs=2)
    result = dlkit.bench(path, runs=2, dynamic_size=16)
    assert result.timings[0].p50_ms > 0
