"""Floors below the FLOP floor: what a model cannot go under on this machine whatever the kernels do.

- The call floor: one run of a one-node model (Identity on a (1, 784) float32 input) through dlkit's runtime,
  a bare onnxruntime session and the LiteRT interpreter. A sample model whose whole LiteRT run is shorter than
  onnxruntime's empty call cannot reach 1.0x against LiteRT with onnxruntime underneath.
- The cost of one more node: chains of 1 and 9 Tanh on a (1, 16) tensor (no compute to speak of) in a bare
  onnxruntime session and in LiteRT; the difference over 8 is what each node of a graph costs beyond its kernel.
- The recurrent floor: a recurrent layer reads its whole recurrent weight matrix at every time step, one
  matrix-vector product per step at batch 1. `steps` times the best (batch x H) @ (H x gates*H) product on this
  machine (numpy's BLAS or onnxruntime's MatMul, whichever is faster) is the least the recurrence can cost in
  float32, however the rest of the layer is computed.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np


def _median_us(fn, budget_s: float = 0.3) -> float:
    for _ in range(200):
        fn()
    times = []
    deadline = time.perf_counter() + budget_s
    while len(times) < 50 or time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(20):
            fn()
        times.append((time.perf_counter() - start) / 20)
    return statistics.median(times) * 1e6


def _model_bytes(graph) -> bytes:
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def _ort_session(graph):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(_model_bytes(graph), options, providers=["CPUExecutionProvider"])


def call_floor_us(folder: Path) -> dict[str, float | None]:
    """Median microseconds of an empty call: {"dlkit": .., "onnxruntime": .., "litert": .. or None}."""
    from onnx import TensorProto, helper

    from dlkit_runtime import Model

    x = np.random.default_rng(0).random((1, 784), dtype=np.float32)
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "empty",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 784])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 784])])
    path = folder / "empty.onnx"
    path.write_bytes(_model_bytes(graph))
    model = Model(path, threads=1)
    bare = _ort_session(graph)._sess
    litert = _litert_runner(x, lambda t: t * 2.0)  # x + 0 would be folded away: one real op
    result = {"dlkit": None, "onnxruntime": None, "litert": None if litert is None else _median_us(litert)}
    rounds = {"dlkit": [], "onnxruntime": []}
    for _ in range(5):  # interleaved
        rounds["dlkit"].append(_median_us(lambda: model.predict(x)))
        rounds["onnxruntime"].append(_median_us(lambda: bare.run(["y"], {"x": x}, None)))
    result.update({k: statistics.median(v) for k, v in rounds.items()})
    return result


def node_cost_us(short: int = 1, long: int = 9) -> dict[str, float | None]:
    """Microseconds each extra node costs: {"onnxruntime": .., "litert": .. or None}."""
    from onnx import TensorProto, helper

    x = np.random.default_rng(0).random((1, 16), dtype=np.float32)

    def ort_chain(count):
        nodes = [helper.make_node("Tanh", [f"t{i}"], [f"t{i + 1}"]) for i in range(count)]
        graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [1, 16])],
                                  [helper.make_tensor_value_info(f"t{count}", TensorProto.FLOAT, [1, 16])])
        session, name = _ort_session(graph)._sess, f"t{count}"
        return lambda: session.run([name], {"t0": x}, None)

    runs = {"onnxruntime": (ort_chain(short), ort_chain(long))}
    litert = (_litert_runner(x, _tanh_chain(short)), _litert_runner(x, _tanh_chain(long)))
    if None not in litert:
        runs["litert"] = litert
    result: dict[str, float | None] = {"onnxruntime": None, "litert": None}
    rounds: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(5):  # interleaved
        for key, (few, many) in runs.items():
            rounds[key].append((_median_us(many) - _median_us(few)) / (long - short))
    result.update({k: statistics.median(v) for k, v in rounds.items()})
    return result


def _litert_runner(x: np.ndarray, body):
    """A LiteRT interpreter running `body` (a TensorFlow function of one tensor) on `x`, invoked as the speed
    race invokes LiteRT; None without LiteRT."""
    try:
        import tensorflow as tf
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return None

    fn = tf.function(body, input_signature=[tf.TensorSpec(x.shape, tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    interpreter = Interpreter(model_content=converter.convert(), num_threads=1)
    interpreter.allocate_tensors()
    index = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]

    def run():
        interpreter.set_tensor(index, x)
        interpreter.invoke()
        return interpreter.get_tensor(out)

    return run


def _tanh_chain(count: int):
    def chain(t):
        import tensorflow as tf

        for _ in range(count):
            t = tf.math.tanh(t)
        return t

    return chain


def recurrent_floor_ms(path: Path, batch: int, steps: int = 100) -> float | None:
    """`steps` x the best recurrent matrix product of the model's GRU/LSTM layers at `batch`; None without one."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    inits = {t.name: t for t in model.graph.initializer}
    total = 0.0
    found = False
    for node in model.graph.node:
        if node.op_type not in ("GRU", "LSTM") or node.input[2] not in inits:
            continue
        found = True
        r = numpy_helper.to_array(inits[node.input[2]])  # (dirs, gates*H, H)
        for direction in r:
            weights = np.ascontiguousarray(direction.T)  # (H, gates*H)
            h = np.random.default_rng(0).random((batch, weights.shape[0]), dtype=np.float32)
            graph = helper.make_graph(
                [helper.make_node("MatMul", ["h", "r"], ["y"])], "recurrent",
                [helper.make_tensor_value_info("h", TensorProto.FLOAT, [batch, weights.shape[0]])],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, weights.shape[1]])],
                [numpy_helper.from_array(weights, "r")])
            session = _ort_session(graph)._sess
            ort_us = _median_us(lambda: session.run(["y"], {"h": h}, None))
            numpy_us = _median_us(lambda: h @ weights)
            total += steps * min(ort_us, numpy_us) / 1e3
    return total if found else None
