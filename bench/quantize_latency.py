"""Latency of float vs each int8 mode, per sample model, on this CPU (issue 3's benchmark).

Every sample model is exported, quantized dynamic and static (calibrated on the shipped MNIST training subset,
on real text for the GRU, on the training JPEG folder for the photo model `mobilenet`), and timed by onnxruntime in one process: one intra-op thread, batch 1 and 32,
interleaved rounds, medians. Absolute times on a shared machine are noise; read the ratios.

    python bench/quantize_latency.py [--rounds 7] [--json bench/results/quantize_latency.json]
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

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ARCH = ROOT / "sample_models" / "architectures.py"
GRU_SPECS = ["x:int32[N,T]", "hidden:float32[N,256]"]


PHOTOS = ROOT / "sample_models" / "data" / "photos"


def _inputs(name: str, batch: int) -> dict[str, np.ndarray]:
    from sample_models import datasets

    if name == "mobilenet":
        from PIL import Image

        files = sorted((PHOTOS / "test").glob("*/*.jpg"))[::37][:batch]
        return {"image": np.stack([np.asarray(Image.open(f).convert("RGB"), np.float32) for f in files])}
    if name == "char_gru":
        ids = datasets.encode(datasets.load_text(shipped_only=True))
        x = np.stack([ids[i * 100:i * 100 + 100] for i in range(batch)]).astype(np.int32)
        return {"x": x, "hidden": np.zeros((batch, 256), np.float32)}
    images, _ = datasets.load_mnist("test", shipped_only=True)
    kind = "cnn" if name.endswith("cnn") else "mlp"
    key = "inputs" if name.startswith("subclassed") else "pixels"
    return {key: datasets.mnist_for(kind, images[:batch])}


def _prepare(name: str, folder: Path) -> dict[str, Path]:
    """float, dynamic and static ONNX files of one sample model."""
    import dlkit
    from sample_models import architectures  # noqa: F401  (registers the subclassed models)
    from sample_models import datasets

    float_path = folder / f"{name}.onnx"
    dlkit.export(ROOT / "sample_models" / "trained" / f"{name}.keras", float_path,
                 input_specs=GRU_SPECS if name == "char_gru" else ())
    calib = folder / f"{name}_calib.npz"
    if name == "mobilenet":
        calib = PHOTOS / "train"
    elif name == "char_gru":
        ids = datasets.encode(datasets.load_text(shipped_only=True))
        x = np.stack([ids[i * 97:i * 97 + 100] for i in range(256)]).astype(np.int32)
        np.savez(calib, x=x, hidden=np.zeros((len(x), 256), np.float32))
    else:
        train, _ = datasets.load_mnist("train", shipped_only=True)
        np.savez(calib, datasets.mnist_for("cnn" if name.endswith("cnn") else "mlp", train[:512]))
    files = {"float": float_path}
    for mode in ("dynamic", "static"):
        out = folder / f"{name}.{mode}.onnx"
        dlkit.quantize(float_path, out, mode=mode, calibration=calib if mode == "static" else None)
        files[mode] = out
    return files


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _time(session, feeds, budget_s: float = 0.25) -> float:
    """Median seconds per run over a time budget (at least 5 runs)."""
    session.run(None, feeds)
    times = []
    deadline = time.perf_counter() + budget_s
    while len(times) < 5 or time.perf_counter() < deadline:
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--models", default="mlp_parity,mlp_digits,cnn,subclassed_mlp,subclassed_cnn,char_gru,mobilenet")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            files = _prepare(name, Path(tmp))
            sessions = {mode: _session(path) for mode, path in files.items()}
            for batch in (1, 32):
                feeds = _inputs(name, batch)
                samples = {mode: [] for mode in sessions}
                for _ in range(args.rounds):  # interleaved, so drift hits every mode alike
                    for mode, session in sessions.items():
                        samples[mode].append(_time(session, feeds))
                median = {mode: statistics.median(v) * 1e3 for mode, v in samples.items()}
                rows.append({"model": name, "batch": batch, **{f"{m}_ms": round(v, 4) for m, v in median.items()},
                             **{f"{m}_speedup": round(median["float"] / median[m], 2) for m in ("dynamic", "static")},
                             "size_kb": {m: round(p.stat().st_size / 1024, 1) for m, p in files.items()}})
    print("| model | batch | float ms | dynamic ms (x float) | static ms (x float) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['model']} | {r['batch']} | {r['float_ms']:.3f} | {r['dynamic_ms']:.3f} ({r['dynamic_speedup']:.2f}x) "
              f"| {r['static_ms']:.3f} ({r['static_speedup']:.2f}x) |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
