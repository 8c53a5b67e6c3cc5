"""Work per inference on the Pis' cores: guest instructions one prediction executes on an emulated Cortex-A72
(Raspberry Pi 4) and Cortex-A76 (Raspberry Pi 5), float against int8, through `dlkit.device.count_instructions`.

Instructions, not time: counted by a TCG plugin in qemu-user (`qemu-aarch64`) running the Pi's own aarch64 wheels
of onnxruntime on one intra-op and one inter-op thread, between markers around the counted runs (start-up, model
loading and warm-up excluded). They repeat exactly for the same file, inputs and CPU, and rank float against int8
kernels as the core executes them; cache misses and memory bandwidth are not in them.

Each model is exported from sample_models/trained, quantized to static int8 for each Pi (`target=` its name;
the photo model calibrated on its training photos, the CNN on 1,000 MNIST training images), and counted at each
batch on real inputs (test photos, MNIST test digits), runner dlkit_runtime.Model.

    python bench/pi_work.py [--models mobilenet,cnn] [--batches 1,8] [--json bench/results/pi_work.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PHOTOS = ROOT / "sample_models" / "data" / "photos"
DEVICES = ("rpi4", "rpi5")
BATCHES = {"mobilenet": (1, 8), "cnn": (1, 32)}  # the photo model at a camera's few frames, the CNN at a batch


def _inputs(name: str, batch: int) -> np.ndarray:
    if name == "mobilenet":
        from PIL import Image

        files = sorted((PHOTOS / "test").glob("*/*.jpg"))[::37][:batch]
        return np.stack([np.asarray(Image.open(f).convert("RGB"), np.float32) for f in files])
    from sample_models import datasets

    images, _ = datasets.load_mnist("test", shipped_only=True)
    return datasets.as_cnn_input(images[:batch])


def _prepare(name: str, folder: Path) -> dict[str, Path]:
    """The float export and an int8 file per Pi ("float", "rpi4", "rpi5")."""
    import dlkit
    from sample_models import datasets

    files = {"float": Path(dlkit.export(ROOT / "sample_models" / "trained" / f"{name}.keras",
                                        folder / f"{name}.onnx").path)}
    calibration = PHOTOS / "train"
    if name != "mobilenet":
        calibration = folder / f"{name}_calib.npz"
        train, _ = datasets.load_mnist("train", shipped_only=True)
        np.savez(calibration, pixels=datasets.as_cnn_input(train[:1000]))
    for device in DEVICES:
        files[device] = Path(dlkit.quantize(files["float"], folder / f"{name}.{device}.int8.onnx",
                                            calibration=calibration, target=device).path)
    return files


def _count(models: list[str], batches: dict, files: dict, runs: int, warmup: int) -> list[dict]:
    """One emulated process per device and model: float and int8 at each batch."""
    from dlkit.device import DEVICES as EMULATED, Workload, count_many

    rows = []
    for device in DEVICES:
        for name in models:
            cases = [(batch, precision) for batch in batches[name] for precision in ("float", "int8")]
            work = [Workload(files[name]["float" if p == "float" else device], _inputs(name, b)) for b, p in cases]
            started = time.perf_counter()
            counts = count_many(device, work, runs=runs, warmup=warmup)
            wall = time.perf_counter() - started
            print(f"{device} {name}: {len(work)} counts in {wall:.1f} s", file=sys.stderr)
            for batch in batches[name]:
                got = {p: c for (b, p), c in zip(cases, counts) if b == batch}
                rows.append({"device": device, "cpu": EMULATED[device].cpu, "model": name, "batch": batch,
                             "float": got["float"].instructions_per_inference,
                             "int8": got["int8"].instructions_per_inference,
                             "int8_over_float": round(got["int8"].instructions_per_inference
                                                      / got["float"].instructions_per_inference, 3),
                             "seconds": {p: c.seconds for p, c in got.items()}, "process_seconds": round(wall, 1),
                             "onnxruntime": got["float"].onnxruntime, "qemu": got["float"].qemu})
    return rows


def _markdown(rows: list[dict], runs: int, warmup: int) -> str:
    first = rows[0]
    lines = [
        "# Instructions per inference on the Pis' cores (emulated)",
        "",
        f"Guest instructions, not time: counted by dlkit's TCG plugin in {first['qemu']}, running the aarch64 "
        f"onnxruntime {first['onnxruntime']} wheel (dlkit_runtime.Model, one intra-op and one inter-op thread) on "
        f"`-cpu cortex-a72` (Raspberry Pi 4) and `-cpu cortex-a76` (Raspberry Pi 5). Per inference: the count of "
        f"{runs} inferences after {warmup} warm-up ones, divided by {runs}. In millions (M).",
        "",
        "| CPU | model | batch | dlkit float | dlkit int8 | int8/float |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(f"| {r['cpu']} ({r['device']}) | {r['model']} | {r['batch']} | {r['float'] / 1e6:.3f} M | "
                     f"{r['int8'] / 1e6:.3f} M | {r['int8_over_float']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(BATCHES), help="comma-separated: mobilenet, cnn")
    parser.add_argument("--batches", help="comma-separated batch sizes for every model (default: mobilenet 1,8; "
                                          "cnn 1,32)")
    parser.add_argument("--runs", type=int, default=3, help="inferences counted per figure")
    parser.add_argument("--warmup", type=int, default=2, help="inferences before counting")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "pi_work.json",
                        help="write the results here, and the table beside it as .md")
    args = parser.parse_args()
    models = args.models.split(",")
    unknown = [m for m in models if m not in BATCHES]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(BATCHES)}")
    batches = {m: tuple(int(b) for b in args.batches.split(",")) if args.batches else BATCHES[m] for m in models}
    with tempfile.TemporaryDirectory() as tmp:
        files = {name: _prepare(name, Path(tmp)) for name in models}
        rows = _count(models, batches, files, args.runs, args.warmup)
    table = _markdown(rows, args.runs, args.warmup)
    print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"runs": args.runs, "warmup": args.warmup, "rows": rows}, indent=2) + "\n")
    args.json.with_suffix(".md").write_text(table)


if __name__ == "__main__":
    main()
