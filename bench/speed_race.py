"""The speed race: every sample model as Keras, tf.function, TFLite/LiteRT and dlkit, in one process.

Per sample model, on the same real inputs and one intra-op thread everywhere, the median latency at batch 1
and 32 of: a Keras direct call, a `tf.function`, LiteRT float and full-integer int8 (calibrated on the same
data, run by the LiteRT interpreter with XNNPACK), and dlkit's runtime float and int8. It counts each model's
FLOPs from the ONNX graph, measures this machine's single-thread float32 peak with a large MatMul, and prints
the floor (FLOPs / peak). Below the table, the floors `floors.py` measures: an empty call through dlkit,
bare onnxruntime and LiteRT, what each extra node costs in onnxruntime and LiteRT, and for recurrent models
the time of their recurrent matrix products alone.
Writes a Markdown table and JSON.

    python bench/speed_race.py [--models cnn,char_gru] [--out bench/results/speed_race]

Needs `pip install ai-edge-litert` for the LiteRT columns (they read n/a without it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
MODELS = ("mlp_parity", "mlp_digits", "cnn", "subclassed_mlp", "subclassed_cnn", "char_gru")
GRU_SPECS = ("x:int32[N,T]", "hidden:float32[N,256]")
ROUNDS = 5
STEPS = 100  # characters per char_gru window: its time steps


def _median_ms(fn, budget_s: float = 0.2) -> float:
    fn()
    times = []
    deadline = time.perf_counter() + budget_s
    while len(times) < 5 or time.perf_counter() < deadline:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _data(name: str, count: int, offset: int = 0) -> dict[str, np.ndarray]:
    from sample_models import datasets

    if name == "char_gru":
        ids = datasets.encode(datasets.load_text(shipped_only=True))
        x = np.stack([ids[(offset + i) * (STEPS + 1):(offset + i) * (STEPS + 1) + STEPS]
                      for i in range(count)]).astype(np.int32)
        return {"x": x, "hidden": np.zeros((count, 256), np.float32)}
    split = "train" if offset else "test"
    images, _ = datasets.load_mnist(split, shipped_only=True)
    kind = "cnn" if name.endswith("cnn") else "mlp"
    key = "inputs" if name.startswith("subclassed") else "pixels"
    return {key: datasets.mnist_for(kind, images[:count])}


def _contestants(name: str, folder: Path) -> dict:
    """name -> {batch -> callable} for each way of running the model."""
    import keras
    import tensorflow as tf

    import dlkit
    from dlkit_runtime import Model
    from sample_models import architectures  # noqa: F401  (registers the subclassed models)

    from litert_runner import litert_models

    model = keras.saving.load_model(ROOT / "sample_models" / "trained" / f"{name}.keras", compile=False)
    feeds = {b: _data(name, b) for b in (1, 32)}
    calib = folder / f"{name}_calib.npz"
    np.savez(calib, **_data(name, 256, offset=1))
    float_path = folder / f"{name}.onnx"
    dlkit.export(model, float_path, input_specs=GRU_SPECS if name == "char_gru" else ())
    int8_path = folder / f"{name}.int8.onnx"
    q = dlkit.quantize(float_path, int8_path, calibration=calib)
    runs: dict[str, dict] = {"keras": {}, "tf.function": {}, "litert float": {}, "litert int8": {},
                             "dlkit float": {}, "dlkit int8": {}}
    order = list(feeds[1])
    traced = tf.function(lambda *xs: model(*xs, training=False) if name != "char_gru" else model(xs[0], xs[1]))
    float_model, int8_model = Model(float_path, threads=1), Model(int8_path, threads=1)
    lite = litert_models(model, name, folder, order, calib)
    for batch, data in feeds.items():
        args = [tf.constant(data[k]) for k in order]
        runs["keras"][batch] = lambda a=args: model(*a, training=False)
        runs["tf.function"][batch] = lambda a=args: traced(*a)
        runs["dlkit float"][batch] = lambda d=data: float_model.predict(d)
        runs["dlkit int8"][batch] = lambda d=data: int8_model.predict(d)
        for kind in ("float", "int8"):
            runner = lite.get(kind)
            runs[f"litert {kind}"][batch] = runner(batch, data) if runner else None
    return {"runs": runs, "onnx": float_path, "int8_mode": q.mode}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "speed_race")
    args = parser.parse_args()

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from flops import count_flops, measure_peak_gflops
    from floors import call_floor_us, node_cost_us, recurrent_floor_ms

    peak = measure_peak_gflops()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        empty = {**call_floor_us(Path(tmp)), "per_node": node_cost_us()}
        for name in args.models.split(","):
            entry = _contestants(name, Path(tmp))
            for batch in (1, 32):
                flops = count_flops(entry["onnx"], batch, STEPS)
                times = {k: [] for k, v in entry["runs"].items() if v[batch] is not None}
                for _ in range(ROUNDS):  # interleaved rounds: drift hits every contestant alike
                    for key in times:
                        times[key].append(_median_ms(entry["runs"][key][batch]))
                median = {k: statistics.median(v) for k, v in times.items()}
                rows.append({"model": name, "batch": batch, "flops": flops, "floor_ms": flops / peak / 1e6,
                             "recurrent_floor_ms": recurrent_floor_ms(entry["onnx"], batch, STEPS),
                             "int8_mode": entry["int8_mode"],
                             **{f"{k}_ms": round(median.get(k), 4) if k in median else None for k in entry["runs"]}})
            print(f"{name}: done", file=sys.stderr)
    table = _markdown(rows, peak, empty)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(table + "\n")
    args.out.with_suffix(".json").write_text(json.dumps({"peak_gflops": peak, "empty_call_us": empty, "rows": rows},
                                                        indent=2))


def _us(value, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f} us"


def _markdown(rows, peak, empty) -> str:
    keys = ["keras", "tf.function", "litert float", "litert int8", "dlkit float", "dlkit int8"]
    lines = [f"Single thread; measured float32 peak {peak:.1f} GFLOP/s. Times in ms (median); ratios are the "
             "contestant's time over dlkit's (higher = dlkit faster).", "",
             "| model | batch | MFLOPs | floor ms | " + " | ".join(keys) + " | dlkit float vs litert | dlkit int8 vs litert | int8 vs float |",
             "| --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in keys) + " | ---: | ---: | ---: |"]
    for r in rows:
        cell = lambda k: "n/a" if r.get(f"{k}_ms") is None else f"{r[f'{k}_ms']:.3f}"  # noqa: E731
        ratio = lambda a, b: "n/a" if r.get(f"{a}_ms") is None else f"{r[f'{a}_ms'] / r[f'{b}_ms']:.2f}x"  # noqa: E731
        lines.append(f"| {r['model']} | {r['batch']} | {r['flops'] / 1e6:.2f} | {r['floor_ms']:.4f} | "
                     + " | ".join(cell(k) for k in keys)
                     + f" | {ratio('litert float', 'dlkit float')} | {ratio('litert int8', 'dlkit int8')} | "
                     f"{ratio('dlkit float', 'dlkit int8')} |")
    us = lambda k: _us(empty.get(k))  # noqa: E731
    lines += ["", f"Empty call (one Identity node, batch 1): dlkit {us('dlkit')}, bare onnxruntime {us('onnxruntime')}, "
              f"LiteRT {us('litert')} (`floors.py`).",
              f"Each extra node (chains of 1 and 9 Tanh on a (1, 16) tensor): onnxruntime "
              f"{_us(empty['per_node'].get('onnxruntime'), 2)}, LiteRT {_us(empty['per_node'].get('litert'), 2)}."]
    for r in rows:
        if r.get("recurrent_floor_ms") is not None:
            lines.append(f"Recurrent floor of {r['model']} at batch {r['batch']} ({STEPS} steps x the best recurrent "
                         f"matrix product here): {r['recurrent_floor_ms']:.3f} ms, against a FLOP floor of "
                         f"{r['floor_ms']:.3f} ms.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
