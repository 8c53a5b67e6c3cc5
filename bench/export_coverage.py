"""Which keras.applications families export, through dlkit, Keras' own `model.export(format="onnx")` and plain
tf2onnx (`from_function`), side by side: success, seconds and peak memory.

One model of each family, built with `weights=None`, 10 classes and a small input (32x32, or the family's
smallest), saved as `.keras`. Each tool runs in a fresh process on the saved file (so its peak resident memory is
its own, TensorFlow's import included). A file counts as a success only when onnxruntime loads it, it takes the one
image input, and its outputs on 4 random images are within 1e-4 of Keras's (the outputs are softmax
probabilities, scale 1); dlkit checks that itself before it keeps a file.

    python bench/export_coverage.py                  # all families, all tools (about 45 minutes)
    python bench/export_coverage.py --tools dlkit    # dlkit only
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
FAMILIES = {  # family -> (constructor, input side)
    "ConvNeXt": ("ConvNeXtTiny", 32), "DenseNet": ("DenseNet121", 32), "EfficientNet": ("EfficientNetB0", 32),
    "EfficientNetV2": ("EfficientNetV2B0", 32), "InceptionResNetV2": ("InceptionResNetV2", 75),
    "InceptionV3": ("InceptionV3", 75), "MobileNet": ("MobileNet", 32), "MobileNetV2": ("MobileNetV2", 32),
    "MobileNetV3Small": ("MobileNetV3Small", 32), "MobileNetV3Large": ("MobileNetV3Large", 32),
    "NASNetMobile": ("NASNetMobile", 32), "ResNet": ("ResNet50", 32), "ResNetV2": ("ResNet50V2", 32),
    "VGG": ("VGG16", 32), "Xception": ("Xception", 71),
}
TOOLS = ("dlkit", "keras", "tf2onnx")
ATOL = 1e-4

_WORKER = r'''
import json, os, resource, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
tool, source, out = sys.argv[1:4]
started = time.perf_counter()
result = {"ok": False}
try:
    import numpy as np
    import keras
    model = keras.saving.load_model(source, compile=False)
    x = np.random.default_rng(0).uniform(0, 255, (4, *model.input_shape[1:])).astype(np.float32)
    if tool == "dlkit":
        import dlkit
        dlkit.export(source, out)
    elif tool == "keras":
        model.export(out, format="onnx", verbose=False)
    else:
        import tensorflow as tf
        import tf2onnx
        spec = [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="image")]
        fn = tf.function(lambda t: model(t, training=False), input_signature=spec)
        tf2onnx.convert.from_function(fn, input_signature=spec, opset=17, output_path=out)
    seconds = time.perf_counter() - started
    import onnxruntime as ort
    session = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    feeds = session.get_inputs()
    if len(feeds) != 1:
        raise RuntimeError(f"{len(feeds)} inputs: {[i.name for i in feeds]}")
    got = session.run(None, {feeds[0].name: x})[0]
    error = float(np.max(np.abs(got - np.asarray(model(x, training=False)))))
    result = {"ok": error <= %(atol)r, "max_abs_error": error, "seconds": round(seconds, 1)}
    if error > %(atol)r:
        result["error"] = f"outputs differ from Keras by {error:.3g}"
except Exception as err:
    result = {"ok": False, "error": f"{type(err).__name__}: {str(err).strip().splitlines()[0][:200] if str(err).strip() else ''}",
              "seconds": round(time.perf_counter() - started, 1)}
result["peak_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
print("RESULT " + json.dumps(result))
''' % {"atol": ATOL}


def _build(family: str, folder: Path) -> Path:
    constructor, side = FAMILIES[family]
    path = folder / f"{constructor}.keras"
    code = (f"import os; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'; import keras; "
            f"keras.applications.{constructor}(weights=None, input_shape=({side}, {side}, 3), classes=10)"
            f".save({str(path)!r})")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    tools, families = args.tools.split(","), args.families.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        worker = folder / "worker.py"
        worker.write_text(_WORKER)
        for family in families:
            source = _build(family, folder)
            row = {"family": family, "model": FAMILIES[family][0], "input": FAMILIES[family][1]}
            for tool in tools:  # one tool after another on the same file, each in a fresh process
                out = folder / f"{source.stem}.{tool}.onnx"
                proc = subprocess.run([sys.executable, str(worker), tool, str(source), str(out)],
                                      capture_output=True, text=True, timeout=1800)
                line = next((raw for raw in proc.stdout.splitlines() if raw.startswith("RESULT ")), None)
                row[tool] = json.loads(line[7:]) if line else {"ok": False, "error": (proc.stderr or "no result")
                                                               .strip().splitlines()[-1][:200]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    from dlkit_runtime import cpu

    result = {"date": time.strftime("%Y-%m-%d"), "host_cpu": cpu.host().to_dict(), "atol": ATOL, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "export_coverage.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"## `export_coverage.py` ({result['date']}; {cpu.host().description})", "",
             "| family | model (input) | " + " | ".join(tools) + " |", "| --- | --- |" + " --- |" * len(tools)]
    for row in rows:
        cells = []
        for tool in tools:
            r = row[tool]
            cells.append(f"ok, {r['seconds']} s, {r['peak_mb']} MB" if r["ok"] else f"failed: {r.get('error', '?')}")
        lines.append(f"| {row['family']} | {row['model']} ({row['input']}) | " + " | ".join(cells) + " |")
    ok = {tool: sum(row[tool]["ok"] for row in rows) for tool in tools}
    lines += ["", "Exported with parity: " + ", ".join(f"{tool} {n}/{len(rows)}" for tool, n in ok.items())]
    (args.out / "export_coverage.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
