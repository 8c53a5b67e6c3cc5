"""The emulated device's own speed: how long `dlkit device setup` takes, and how many samples a second
`verify --device` computes, so that later changes keep emulation from getting wasteful.

Emulated timings say nothing about the device; these are the emulator's throughput on this machine, which is what a
user waits for. Measured through `dlkit.device.Emulator` as `verify --device` uses it (one emulated process, each
model loaded once, batches of 256), for the sample MNIST CNN float and static int8 (quantized for arm64) on the
Pi 4's and the Pi 5's emulated cores, after one warm-up batch; and a first setup into an empty cache (downloads from
Debian's archive and PyPI included) against a setup that reuses it.

    python bench/device.py               # writes bench/results/device.json and .md (about 5 minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEVICES = ("rpi4", "rpi5")
BATCH = 256


def _setup_seconds(cache: Path) -> float:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dlkit", "device", "setup", "rpi4", "--json"], capture_output=True,
                          text=True, env={**os.environ, "DLKIT_DEVICE_CACHE": str(cache)})
    if proc.returncode != 0:
        sys.exit(f"dlkit device setup failed: {proc.stderr}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2048, help="samples per model and device")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()

    import numpy as np

    import dlkit
    from dlkit.device import Emulator
    from dlkit_runtime import cpu
    from sample_models import datasets

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        setup = {"first": round(_setup_seconds(folder / "cache"), 1), "reused": round(_setup_seconds(folder / "cache"), 1)}
        images, _ = datasets.load_mnist("test", shipped_only=True)
        train, _ = datasets.load_mnist("train", shipped_only=True)
        np.savez(folder / "calib.npz", pixels=datasets.as_cnn_input(train[:1000]))
        models = {"float": folder / "cnn.onnx", "int8": folder / "cnn.int8.onnx"}
        dlkit.export(ROOT / "sample_models" / "trained" / "cnn.keras", models["float"])
        dlkit.quantize(models["float"], models["int8"], calibration=folder / "calib.npz", target="rpi4")
        pixels = datasets.as_cnn_input(images[:args.samples])
        rows = []
        for device in DEVICES:
            with Emulator(device) as emulator:
                for kind, path in models.items():
                    model = emulator.load(path)
                    model.predict(pixels[:BATCH])  # warm-up: the session's first run
                    started = time.perf_counter()
                    for start in range(0, len(pixels), BATCH):
                        model.predict(pixels[start:start + BATCH])
                    seconds = time.perf_counter() - started
                    rows.append({"device": device, "cpu_model": emulator.device.cpu, "model": f"cnn {kind}",
                                 "samples": len(pixels), "samples_per_second": round(len(pixels) / seconds, 1),
                                 "seconds_for_10k": round(10_000 * seconds / len(pixels), 1)})
                    print(rows[-1], flush=True)
    host = cpu.host()
    result = {"host_cpu": host.to_dict(), "threads": os.cpu_count(), "setup_seconds": setup, "rows": rows,
              "date": time.strftime("%Y-%m-%d")}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "device.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"## `device.py` ({result['date']}; host {host.description}, {os.cpu_count()} cores)", "",
             f"`dlkit device setup`: {setup['first']} s into an empty cache (downloads included), {setup['reused']} s "
             "reusing it (starting the emulated Python and onnxruntime).", "",
             "| device | qemu CPU | model | samples/s | 10,000 samples |", "| --- | --- | --- | ---: | ---: |"]
    lines += [f"| {r['device']} | {r['cpu_model']} | {r['model']} | {r['samples_per_second']} | "
              f"{r['seconds_for_10k']} s |" for r in rows]
    (args.out / "device.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
