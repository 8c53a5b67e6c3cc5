"""Which keras.applications families export, through dlkit, Keras' own `model.export(format="onnx")` and plain
tf2onnx (`from_function`), side by side: success, seconds and peak memory.

One model of each family, built with `weights=None`, 10 classes, no classifier activation (logits: a softmax of an
untrained network is often one-hot, which would hide any error) and a small input (32x32, or the family's
smallest), saved as `.keras`. Each tool runs in a fresh process on the saved file (so its peak resident memory is
its own, TensorFlow's import included). A file counts as a success only when onnxruntime loads it, it takes the one
image input, and its outputs on 4 random images (pixels uniform in 0-255) are within 1e-4 of Keras's relative to
the outputs' scale (max |logit|, at least 1). dlkit is given that bound as its atol and the same images as its
sample data: it checks them itself before it keeps a file.

    python bench/export_coverage.py                  # all families, all tools (about 55 minutes)
    python bench/export_coverage.py --tools dlkit    # dlkit only
    python bench/export_coverage.py --section kerashub   # KerasHub only (about 10 minutes), the rest kept

The KerasHub section (bench/export_coverage_kerashub.py) runs small models of each KerasHub family with random
weights (bench/kerashub_families.py), judged the same way on each of their outputs.

tests/toolkit/exporting/test_export_coverage.py runs `measure("dlkit", ...)` for every family.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
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
    reference = np.asarray(model(x, training=False))
    scale = max(1.0, float(np.max(np.abs(reference))))
    started = time.perf_counter()  # the conversion's time, not the reference's
    if tool == "dlkit":
        import dlkit
        dlkit.export(source, out, sample_data={"image": x}, atol=%(atol)r * scale)
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
    error = float(np.max(np.abs(got - reference))) / scale
    result = {"ok": error <= %(atol)r, "relative_error": error, "scale": scale, "seconds": round(seconds, 1)}
    if not error <= %(atol)r:
        result["error"] = f"outputs differ from Keras by {error:.3g} of their scale"
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
            f"keras.applications.{constructor}(weights=None, input_shape=({side}, {side}, 3), classes=10, "
            f"classifier_activation=None)"
            f".save({str(path)!r})")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return path


def measure(tool: str, family: str, folder: Path, source: Path | None = None) -> dict:
    """One tool on one family's model (built into `folder` unless `source` is given), in a fresh process."""
    source = source or _build(family, folder)
    worker = folder / "worker.py"
    if not worker.exists():  # written whole, then renamed: callers in other threads never see half of it
        part = folder / f".worker-{os.getpid()}-{threading.get_ident()}.py"
        part.write_text(_WORKER)
        part.replace(worker)
    out = folder / f"{source.stem}.{tool}.onnx"
    proc = subprocess.run([sys.executable, str(worker), tool, str(source), str(out)], capture_output=True, text=True,
                          timeout=1800)
    line = next((raw for raw in proc.stdout.splitlines() if raw.startswith("RESULT ")), None)
    if line:
        return json.loads(line[7:])
    return {"ok": False, "error": ((proc.stderr or "").strip().splitlines() or ["no result"])[-1][:200]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--section", choices=("all", "applications", "kerashub"), default="all",
                        help="which section to run; the other keeps its last results")
    parser.add_argument("--kerashub-families", default=None, help="comma-separated; default: all")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    tools, families = args.tools.split(","), args.families.split(",")
    previous = args.out / "export_coverage.json"
    result = json.loads(previous.read_text()) if previous.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.section in ("all", "applications"):
            result.update(_applications(tools, families, Path(tmp)))
        if args.section in ("all", "kerashub"):
            result["kerashub"] = _kerashub(tools, args.kerashub_families, Path(tmp), result.get("kerashub"))
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in (("export_coverage.json", json.dumps(result, indent=2) + "\n"),
                       ("export_coverage.md", markdown(result, tools))):
        part = args.out / f".{name}.part"
        part.write_text(text)
        part.replace(args.out / name)
    print(markdown(result, tools))


def _kerashub(tools, families: str | None, folder: Path, previous: dict | None) -> dict:
    import keras_hub

    sys.path.insert(0, str(ROOT))  # `bench` as a package, as the tests import it
    from bench import export_coverage_kerashub
    from bench.kerashub_families import FAMILIES as HUB

    chosen = families.split(",") if families else list(HUB)
    fresh = {row["family"]: row for row in export_coverage_kerashub.run(tools, chosen, folder, ATOL)}
    kept = [row for row in (previous or {}).get("rows", []) if row["family"] not in fresh] if families else []
    order = list(HUB)  # a partial run replaces its families' rows and keeps the others
    rows = sorted(kept + list(fresh.values()), key=lambda row: order.index(row["family"]) if row["family"] in order
                  else len(order))
    return {"date": time.strftime("%Y-%m-%d"), "keras_hub": keras_hub.__version__, "rows": rows}


def _applications(tools, families, folder: Path) -> dict:
    rows = []
    for family in families:
        source = _build(family, folder)
        row = {"family": family, "model": FAMILIES[family][0], "input": FAMILIES[family][1]}
        for tool in tools:  # one tool after another on the same file, each in a fresh process
            row[tool] = measure(tool, family, folder, source)
        rows.append(row)
        print(json.dumps(row), flush=True)
    from dlkit_runtime import cpu

    return {"date": time.strftime("%Y-%m-%d"), "host_cpu": cpu.host().to_dict(), "atol": ATOL, "rows": rows}


def markdown(result: dict, tools) -> str:
    """The tables of a run's result (bench/results/export_coverage.json)."""
    from dlkit_runtime.cpu import CpuKind

    where = CpuKind.from_dict(result["host_cpu"]).description
    lines = [f"## `export_coverage.py` ({result['date']}; {where})", "",
             "| family | model (input) | " + " | ".join(tools) + " |", "| --- | --- |" + " --- |" * len(tools)]
    for row in result["rows"]:
        cells = [_cell(row[tool]) for tool in tools]
        lines.append(f"| {row['family']} | {row['model']} ({row['input']}) | " + " | ".join(cells) + " |")
    ok = {tool: sum(row[tool]["ok"] for row in result["rows"]) for tool in tools}
    lines += ["", "Exported with parity: " + ", ".join(f"{tool} {n}/{len(result['rows'])}" for tool, n in ok.items()),
              "", "Seconds from the loaded model to the file (dlkit's include its two parity checks in onnxruntime "
              "and the graph cleanup); peak resident memory of the whole process, TensorFlow's import included.", ""]
    if "kerashub" in result:
        sys.path.insert(0, str(ROOT))
        from bench import export_coverage_kerashub

        lines += export_coverage_kerashub.markdown(result["kerashub"], tools, _cell)
    return "\n".join(lines).rstrip("\n") + "\n"


def _cell(r: dict) -> str:
    """One tool's result as a table cell: its time and memory, or why it failed (onnxruntime's preamble and the
    temporary path left out)."""
    import re

    if r["ok"]:
        return f"ok, {r['seconds']} s, {r['peak_mb']} MB"
    why = re.sub(r"\[ONNXRuntimeError\] : \d+ : \w+ : ", "", r.get("error", "?"))
    why = re.sub(r"Load model from \S+ failed: ?", "", why)
    return f"failed: {why[:90]}".replace("|", "/")


if __name__ == "__main__":
    main()
