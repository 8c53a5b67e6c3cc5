"""Damaged model files (bit flips, truncations, overwritten and zeroed runs; seeded) loaded by the runtime and by
every CLI verb that loads a model: each gives a one-line error or a result, never a crash, a traceback or bytes on
stdout besides a result. The files are worked through by tests/toolkit/fuzz_worker.py in a subprocess, restarted
after the file that crashed it, so a crash is seen as a crash."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

import dlkit

WORKER = Path(__file__).with_name("fuzz_worker.py")
PER_BASE = 80  # mutations of each base model: 240 files, each through 7 checks


def _mlp(path: Path) -> Path:
    rng = np.random.default_rng(3)
    inits = [nh.from_array((rng.standard_normal((16, 32)) * 0.3).astype(np.float32), "w1"),
             nh.from_array(np.zeros(32, np.float32), "b1"),
             nh.from_array((rng.standard_normal((32, 10)) * 0.3).astype(np.float32), "w2")]
    nodes = [h.make_node("MatMul", ["x", "w1"], ["m"], name="mm1"), h.make_node("Add", ["m", "b1"], ["a"], name="add"),
             h.make_node("Relu", ["a"], ["r"], name="relu"), h.make_node("MatMul", ["r", "w2"], ["logits"], name="mm2"),
             h.make_node("Softmax", ["logits"], ["probs"], axis=-1, name="softmax")]
    graph = h.make_graph(nodes, "mlp", [h.make_tensor_value_info("x", T.FLOAT, ["N", 16])],
                         [h.make_tensor_value_info("probs", T.FLOAT, ["N", 10])], inits)
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), path)
    return path


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    buf = bytearray(data)
    kind = rng.integers(4)
    if kind == 0:  # bit flips
        for pos in rng.integers(0, len(buf), rng.integers(1, 9)):
            buf[pos] ^= 1 << int(rng.integers(8))
    elif kind == 1:  # truncated
        buf = buf[:int(rng.integers(0, len(buf)))]
    elif kind == 2:  # a run overwritten with random bytes
        start, size = int(rng.integers(0, len(buf))), int(rng.integers(1, 65))
        buf[start:start + size] = rng.integers(0, 256, min(size, len(buf) - start), dtype=np.uint8).tobytes()
    else:  # a run zeroed
        start, size = int(rng.integers(0, len(buf))), int(rng.integers(1, 257))
        buf[start:start + size] = bytes(min(size, len(buf) - start))
    return bytes(buf)


@pytest.mark.slow
def test_damaged_models_give_one_line_errors_everywhere(cnn_int8, mnist_npz, tmp_path):
    mlp = _mlp(tmp_path / "mlp.onnx")
    calib = tmp_path / "x.npy"
    np.save(calib, np.random.default_rng(0).standard_normal((64, 16)).astype(np.float32))
    mlp_int8 = Path(dlkit.quantize(mlp, tmp_path / "mlp.int8.onnx", calibration=calib).path)
    np.save(tmp_path / "mlp_in.npy", np.zeros((2, 16), np.float32))
    np.save(tmp_path / "cnn_in.npy", np.load(mnist_npz["cnn", "eval"])["pixels"][:2])
    bases = {"mlp": mlp, "mlp_int8": mlp_int8, "cnn_int8": cnn_int8}
    inputs = {"mlp": tmp_path / "mlp_in.npy", "mlp_int8": tmp_path / "mlp_in.npy", "cnn_int8": tmp_path / "cnn_in.npy"}
    rng = np.random.default_rng(20261202)
    files = []
    for base, path in bases.items():
        data = path.read_bytes()
        for i in range(PER_BASE):
            damaged = tmp_path / "damaged" / f"{base}_{i:03d}.onnx"
            damaged.parent.mkdir(exist_ok=True)
            damaged.write_bytes(_mutate(data, rng))
            files.append({"path": str(damaged), "base": base})
    for base, path in bases.items():  # and one sure case each: a tensor's name made invalid UTF-8, which makes
        data = path.read_bytes()       # onnxruntime print its fallback banner on stdout as it creates the session
        name = onnx.load(str(path)).graph.node[0].output[0].encode()
        at = data.index(name) + len(name) // 2
        damaged = tmp_path / "damaged" / f"{base}_utf8.onnx"
        damaged.write_bytes(data[:at] + b"\xdf" + data[at + 1:])
        files.append({"path": str(damaged), "base": base})
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps({"files": files, "bases": {k: str(v) for k, v in bases.items()},
                                "inputs": {k: str(v) for k, v in inputs.items()}}))
    results = tmp_path / "results.jsonl"
    crashes, first = [], 0
    while first < len(files):
        proc = subprocess.run([sys.executable, str(WORKER), str(jobs), str(results), str(first)], capture_output=True,
                              text=True, timeout=1800)
        lines = [json.loads(line) for line in results.read_text().splitlines()]
        started = max(r["job"] for r in lines if r.get("start")) if lines else -1
        if proc.returncode == 0 and started == len(files) - 1:
            break
        crashes.append((files[started]["path"], proc.returncode, proc.stderr[-500:]))
        first = started + 1
    checks = [r for r in json.loads("[" + ",".join(results.read_text().splitlines()) + "]") if "check" in r]
    assert not crashes, crashes[:3]
    assert len(checks) == 7 * len(files)  # every file through every check
    bad = [r for r in checks if r["outcome"] not in ("ran", "error") or r["stdout"]]
    assert not bad, (len(bad), bad[:5])
    tally = Counter((r["check"], r["outcome"]) for r in checks)
    assert tally["model", "error"] > 0 and tally["model", "ran"] > 0, tally  # both kinds of damage were met
