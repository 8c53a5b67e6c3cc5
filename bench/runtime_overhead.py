"""What dlkit_runtime costs over bare onnxruntime: `Model.predict` against `InferenceSession.run` on the same
session and inputs (goal <= 3%), and the import time of `dlkit_runtime` beyond onnxruntime's (goal <= 150 ms).

Runs are interleaved (a block of bare runs, a block of predict runs, repeated) and the medians compared, so drift
in the machine's load hits both alike. Imports are timed in fresh interpreters.

    python bench/runtime_overhead.py [--model cnn.onnx] [--batch 1,32] [--json]

Without --model it exports sample_models/trained/cnn.keras with `dlkit export` in a subprocess first.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OVERHEAD_GOAL_PCT = 3.0
IMPORT_GOAL_MS = 150.0
_IMPORT_SCRIPT = """
import time
t0 = time.perf_counter()
import onnxruntime
t1 = time.perf_counter()
import dlkit_runtime
t2 = time.perf_counter()
print((t1 - t0) * 1000, (t2 - t1) * 1000)
"""


def overhead(model_path: Path, batch: int, repeats: int, block: int) -> dict:
    import numpy as np

    from dlkit_runtime import Model
    from dlkit_runtime.tensors import sample_inputs

    model = Model(model_path, providers="cpu")
    feed = sample_inputs(model.inputs, batch)
    x = feed if len(feed) > 1 else next(iter(feed.values()))
    session = model.session
    for _ in range(block):  # warm both paths
        session.run(None, feed)
        model.predict(x)
    bare, wrapped = [], []
    for _ in range(repeats):
        for fn, out in ((lambda: session.run(None, feed), bare), (lambda: model.predict(x), wrapped)):
            times = np.empty(block)
            for i in range(block):
                started = time.perf_counter()
                fn()
                times[i] = time.perf_counter() - started
            out.append(float(np.median(times)))
    bare_us, wrapped_us = statistics.median(bare) * 1e6, statistics.median(wrapped) * 1e6
    pct = (wrapped_us / bare_us - 1) * 100
    return {"batch": batch, "bare_run_us": round(bare_us, 2), "predict_us": round(wrapped_us, 2),
            "overhead_us": round(wrapped_us - bare_us, 2), "overhead_pct": round(pct, 2),
            "within_goal": pct <= OVERHEAD_GOAL_PCT}


def import_times(repeats: int) -> dict:
    ort_ms, ours_ms = [], []
    for _ in range(repeats):
        proc = subprocess.run([sys.executable, "-c", _IMPORT_SCRIPT], capture_output=True, text=True, check=True)
        a, b = map(float, proc.stdout.split())
        ort_ms.append(a)
        ours_ms.append(b)
    beyond = statistics.median(ours_ms)
    return {"onnxruntime_ms": round(statistics.median(ort_ms), 1), "dlkit_runtime_beyond_ms": round(beyond, 1),
            "within_goal": beyond <= IMPORT_GOAL_MS}


def main() -> None:
    parser = argparse.ArgumentParser(description="dlkit_runtime's overhead over bare onnxruntime.")
    parser.add_argument("--model", type=Path, help="ONNX file [default: the sample CNN, exported now]")
    parser.add_argument("--batch", default="1,32", help="batch sizes, e.g. 1,32")
    parser.add_argument("--repeats", type=int, default=15, help="interleaved blocks per path")
    parser.add_argument("--block", type=int, default=200, help="runs per block")
    parser.add_argument("--imports", type=int, default=7, help="fresh interpreters for the import time")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            model = Path(tmp) / "cnn.onnx"
            subprocess.run([sys.executable, "-m", "dlkit", "export", str(ROOT / "sample_models/trained/cnn.keras"),
                            "-o", str(model), "--json"], check=True, capture_output=True)
        rows = [overhead(model, int(b), args.repeats, args.block) for b in args.batch.split(",")]
    imports = import_times(args.imports)
    if args.json:
        print(json.dumps({"model": str(args.model or "cnn.keras (exported)"), "overhead": rows, "imports": imports},
                         indent=2))
        return
    print(f"{'batch':>5} {'bare run (us)':>14} {'predict (us)':>13} {'overhead':>16}  goal <= {OVERHEAD_GOAL_PCT:g}%")
    for r in rows:
        print(f"{r['batch']:>5} {r['bare_run_us']:>14.1f} {r['predict_us']:>13.1f} "
              f"{r['overhead_us']:>6.1f} us {r['overhead_pct']:>5.2f}%  {'ok' if r['within_goal'] else 'OVER'}")
    print(f"import: onnxruntime {imports['onnxruntime_ms']:.1f} ms, dlkit_runtime beyond it "
          f"{imports['dlkit_runtime_beyond_ms']:.1f} ms  goal <= {IMPORT_GOAL_MS:g} ms  "
          f"{'ok' if imports['within_goal'] else 'OVER'}")


if __name__ == "__main__":
    main()
