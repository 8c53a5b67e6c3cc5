"""Times each model of this bundle on this device and says which one to run.

    .venv/bin/python bench.py [--runs 30] [--batch-size 1]

An int8 model is not always faster: the Raspberry Pi 4's Cortex-A72 has no dot-product instructions (the Pi 5's
Cortex-A76 has them), so there int8 may be no faster than float. Measure here, then run the faster file.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from dlkit_runtime.errors import DlkitError  # noqa: E402
from dlkit_runtime.manifest import open_model, read_manifest  # noqa: E402
from dlkit_runtime.tensors import sample_inputs  # noqa: E402


def time_model(file: str, runs: int, batch_size: int, threads: int | None) -> float:
    """The median latency in ms of one model of the bundle on random inputs."""
    model = open_model(HERE, file, threads=threads)
    x = sample_inputs(model.inputs, batch_size, dynamic_size=16)
    for _ in range(3):
        model.predict(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model.predict(x)
        times.append((time.perf_counter() - start) * 1000)
    return sorted(times)[len(times) // 2]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Time each bundled model here and say which to run.")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--threads", type=int, help="intra-op threads (default: the manifest's)")
    args = parser.parse_args(argv)
    try:
        manifest = read_manifest(HERE)
        results = [(entry, time_model(entry.file, args.runs, args.batch_size, args.threads)) for entry in manifest.models]
    except DlkitError as err:
        print(f"Error: {err}", file=sys.stderr)
        return err.exit_code
    for entry, ms in results:
        print(f"{entry.file:<32} {entry.precision:<8} median {ms:8.2f} ms  (batch {args.batch_size})")
    best = min(results, key=lambda r: r[1])[0]
    if len(results) > 1:
        print(f"fastest here: {best.file}; run: .venv/bin/python predict.py INPUT --model {best.file}")
    else:
        print(f"only one model is bundled ({best.file}); if it is int8 and slow on this device, bundle the float "
              "model beside it (dlkit bundle INT8 --float-model FLOAT) and run this again")
    return 0


if __name__ == "__main__":
    sys.exit(main())
