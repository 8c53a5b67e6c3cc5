"""Wall time of `dlkit export` on each sample model, as a user runs it: a fresh process, TensorFlow's import
included. The target is under 15 s per model on this machine class (2 cores).

    python bench/export_time.py [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAINED = ROOT / "sample_models" / "trained"
TARGET_S = 15.0
EXTRA = {
    "subclassed_mlp": ["--custom-objects", str(ROOT / "sample_models" / "architectures.py")],
    "subclassed_cnn": ["--custom-objects", str(ROOT / "sample_models" / "architectures.py")],
    "char_gru": ["--custom-objects", str(ROOT / "sample_models" / "architectures.py"),
                 "--input", "x:int32[N,T]", "--input", "hidden:float32[N,256]"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description="Time `dlkit export` on every sample model.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in sorted(TRAINED.glob("*.keras")):
            cmd = [sys.executable, "-m", "dlkit", "export", str(model), "-o", f"{tmp}/{model.stem}.onnx", "--json",
                   *EXTRA.get(model.stem, [])]
            started = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.perf_counter() - started
            if proc.returncode != 0:
                sys.exit(f"{model.name}: {proc.stderr.strip()}")
            inner = json.loads(proc.stdout)["seconds"]
            rows.append({"model": model.stem, "wall_s": round(wall, 2), "export_s": inner, "under_target": wall < TARGET_S})
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'model':<16} {'wall (s)':>9} {'in export() (s)':>16}  target < {TARGET_S:g} s")
    for row in rows:
        print(f"{row['model']:<16} {row['wall_s']:>9.2f} {row['export_s']:>16.2f}  {'ok' if row['under_target'] else 'SLOW'}")


if __name__ == "__main__":
    main()
