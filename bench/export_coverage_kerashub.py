"""The KerasHub section of bench/export_coverage.py: small models of each KerasHub family (bench/kerashub_families.py,
random weights, built offline), through dlkit, Keras' own `model.export(format="onnx")` and plain tf2onnx
(`from_function` on a `tf.function` of the model), each in a fresh process on the saved `.keras` file.

Judged as the keras.applications section is: a file counts when onnxruntime loads it, it takes the model's inputs, and
on 4 samples each Keras output is within 1e-4 of Keras's relative to that output's scale (max |value|, at least 1).
Outputs are matched by name where the ONNX output carries the Keras one, else to the ONNX output of the same shape
closest to it. dlkit gets the same samples and atol 1e-4 times the smallest scale, and keeps a detector's raw heads
(`with_decoding=False`; its decoded export is tests/toolkit/exporting/test_detection.py's).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

_WORKER = r'''
import json, os, resource, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
tool, source, spec_path, out, atol = sys.argv[1:6]
atol = float(atol)
sys.path.insert(0, %(here)r)
started = time.perf_counter()
try:
    import numpy as np
    import keras
    import keras_hub  # registers KerasHub's classes for loading
    from kerashub_families import samples
    model = keras.saving.load_model(source, compile=False)
    spec = json.loads(open(spec_path).read())
    x = samples({k: (tuple(v[0]), v[1]) for k, v in spec.items()}, 4)
    names = [t.name for t in model.inputs]
    by_name = isinstance(model.input, dict)
    arrays = [x[n] for n in names] if by_name else list(x.values())
    arrays = [a.astype(t.dtype) for a, t in zip(arrays, model.inputs)]
    feed = dict(zip(names, arrays)) if by_name else (arrays if len(arrays) > 1 else arrays[0])
    raw = model(feed, training=False)
    reference = ({k: np.asarray(v) for k, v in raw.items()} if isinstance(raw, dict)
                 else {"output": np.asarray(raw)})
    scales = {k: max(1.0, float(np.max(np.abs(v)))) for k, v in reference.items()}
    started = time.perf_counter()  # the conversion's time, not the reference's
    if tool == "dlkit":
        import inspect
        import dlkit
        raw_heads = {"with_decoding": False} if "with_decoding" in inspect.signature(dlkit.export).parameters else {}
        dlkit.export(source, out, sample_data=dict(zip(names, arrays)), atol=atol * min(scales.values()), **raw_heads)
    elif tool == "keras":
        model.export(out, format="onnx", verbose=False)
    else:
        import tensorflow as tf
        import tf2onnx
        specs = [tf.TensorSpec((None, *t.shape[1:]), t.dtype, name=n) for n, t in zip(names, model.inputs)]
        def call(*args):
            return model(dict(zip(names, args)) if by_name else (list(args) if len(args) > 1 else args[0]),
                         training=False)
        fn = tf.function(call, input_signature=specs)
        tf2onnx.convert.from_function(fn, input_signature=specs, opset=17, output_path=out)
    seconds = time.perf_counter() - started
    import onnxruntime as ort
    session = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    feeds = session.get_inputs()
    if len(feeds) != len(arrays):
        raise RuntimeError(f"{len(feeds)} inputs for {len(arrays)}: {[i.name for i in feeds]}")
    given = {}
    for i, info in enumerate(feeds):
        j = next((k for k, n in enumerate(names) if info.name.split(":")[0] in (n, n.split(":")[0])), i)
        kind = info.type[len("tensor("):-1]
        given[info.name] = arrays[j].astype({"float": np.float32, "bool": bool}.get(kind, kind))
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, given)))
    errors, free = {}, dict(got)
    for key, ref in reference.items():
        same = {n: v for n, v in free.items() if v.shape == ref.shape}
        if not same:
            raise RuntimeError(f"no ONNX output of shape {ref.shape} for {key!r}")
        named = [n for n in same if n.split(":")[0] == key] or [n for n in same if key in n]
        pick = named[0] if len(named) == 1 else min(same, key=lambda n: float(np.max(np.abs(same[n] - ref))))
        errors[key] = float(np.max(np.abs(free.pop(pick) - ref))) / scales[key]
    error = max(errors.values())
    result = {"ok": error <= atol, "relative_error": error, "outputs": len(reference), "seconds": round(seconds, 1)}
    if not error <= atol:
        worst = max(errors, key=errors.get)
        result["error"] = f"output {worst!r} differs from Keras by {error:.3g} of its scale"
except Exception as err:
    import re
    text = re.sub(r"Load model from \S+ failed: ?", "", str(err).strip())
    text = re.sub(r"[\w.-]+(/[\w.:-]*)+/([\w.:-]+)", r".../\2", text)  # node names without their scopes
    result = {"ok": False, "error": f"{type(err).__name__}: {text.splitlines()[0][:200] if text else ''}",
              "seconds": round(time.perf_counter() - started, 1)}
result["peak_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
print("RESULT " + json.dumps(result))
''' % {"here": str(HERE)}


def build(family: str, folder: Path) -> tuple[Path, Path, dict]:
    """Builds one family's model in a fresh process and saves it: returns the `.keras` file, its samples' spec file
    and a description (class, parameters, input shapes)."""
    path, spec = folder / f"{family}.keras", folder / f"{family}.inputs.json"
    code = (
        "import os, json, sys; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'; "
        f"sys.path.insert(0, {str(HERE)!r}); import keras; from kerashub_families import FAMILIES; "
        "keras.utils.set_random_seed(0); "
        f"model, inputs = FAMILIES[{family!r}](); model.save({str(path)!r}); "
        f"open({str(spec)!r}, 'w').write(json.dumps(inputs)); "
        "kind = type(model).__name__; kind = model.name if kind == 'Functional' else kind; "
        "print('MODEL ' + json.dumps({'class': kind, 'params': model.count_params()}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    line = next((raw for raw in proc.stdout.splitlines() if raw.startswith("MODEL ")), None)
    if line is None:
        raise RuntimeError(f"{family} did not build: {((proc.stderr or '').strip().splitlines() or ['?'])[-1]}")
    about = json.loads(line[6:])
    about["inputs"] = {k: v[0] for k, v in json.loads(spec.read_text()).items()}
    return path, spec, about


def measure(tool: str, family: str, folder: Path, built: tuple[Path, Path, dict] | None = None,
            atol: float = 1e-4) -> dict:
    """One tool on one family's saved model (built into `folder` unless `built` is given), in a fresh process."""
    source, spec, _ = built or build(family, folder)
    worker = folder / "kerashub_worker.py"
    if not worker.exists():
        part = folder / ".kerashub_worker.part"
        part.write_text(_WORKER)
        part.replace(worker)
    out = folder / f"{source.stem}.{tool}.onnx"
    out.unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, str(worker), tool, str(source), str(spec), str(out), repr(atol)],
                          capture_output=True, text=True, timeout=1800)
    line = next((raw for raw in proc.stdout.splitlines() if raw.startswith("RESULT ")), None)
    if line:
        return json.loads(line[7:])
    return {"ok": False, "error": ((proc.stderr or "").strip().splitlines() or ["no result"])[-1][:200]}


def run(tools, families, folder: Path, atol: float) -> list[dict]:
    """Every family through every tool; a family that does not build gets a row that says so."""
    rows = []
    for family in families:
        try:
            built = build(family, folder)
        except RuntimeError as err:
            rows.append({"family": family, "model": "-", "built": False, "error": str(err)[:200]})
            print(json.dumps(rows[-1]), flush=True)
            continue
        row = {"family": family, "model": built[2]["class"], "params": built[2]["params"],
               "inputs": built[2]["inputs"], "built": True}
        for tool in tools:
            row[tool] = measure(tool, family, folder, built, atol)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def markdown(section: dict, tools, cell) -> list[str]:
    """The KerasHub table of a run (`section` as export_coverage.json's "kerashub"), `cell` rendering one result."""
    rows = section["rows"]
    lines = [f"### KerasHub {section['keras_hub']} (random weights, small configurations; {section['date']})", "",
             "| family | model (params; input) | " + " | ".join(tools) + " |", "| --- | --- |" + " --- |" * len(tools)]
    for row in rows:
        if not row["built"]:
            lines.append(f"| {row['family']} | did not build: {row['error'][:90]} |" + " - |" * len(tools))
            continue
        shapes = "; ".join("x".join(map(str, s)) for s in row["inputs"].values())
        lines.append(f"| {row['family']} | {row['model']} ({row['params']:,}; {shapes}) | "
                     + " | ".join(cell(row[tool]) for tool in tools) + " |")
    ok = {tool: sum(bool(row.get(tool, {}).get("ok")) for row in rows) for tool in tools}
    return lines + ["", "Exported with parity: " + ", ".join(f"{tool} {n}/{len(rows)}" for tool, n in ok.items()), ""]
