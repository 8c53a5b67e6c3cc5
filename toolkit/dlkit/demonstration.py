"""`dlkit.demo`: the main job end to end on a sample model of the repository's `sample_models/`.

Keras file -> ONNX (checked) -> static int8 calibrated on the shipped data -> verified on real test data
(accuracy of Keras, ONNX and int8, with the HTML report) -> benchmarked -> bundled for a Raspberry Pi,
ending in one summary: accuracy, file size, latency and speed-up over a Keras call.
"""

from __future__ import annotations

import importlib
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dlkit.core import catalogue
from dlkit.errors import InvalidInputError

DEMOS = {"cnn": "cnn", "mlp": "mlp_digits", "gru": "char_gru", "mobilenet": "mobilenet"}
LABELS = {"cnn": "labels_digits.txt", "mlp": "labels_digits.txt", "mobilenet": "labels_photos.txt"}
_PHOTO_SAMPLES = 256  # test photos the export is checked on
GRU_SPECS = ("x:int32[N,T]", "hidden:float32[N,256]")
GRU_RENAME = ("output_0=logits", "output_1=state")
_EVAL_TEXT_WINDOWS = 300
_LATENCY_BUDGET_S = 0.5


@dataclass(frozen=True)
class DemoRow:
    """One form of the model in the summary.

    Attributes:
        name: "keras", "onnx float" or "onnx int8". accuracy: top-1 on the test data (next character for the GRU).
        size_bytes: its file. latency_ms: median at batch 1. speedup: Keras's latency over this one's.
    """

    name: str
    accuracy: float
    size_bytes: int
    latency_ms: float
    speedup: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DemoResult:
    """What the demo made and measured. `passed`: every check (export parity, quantization, verify) held."""

    model: str
    out_dir: str
    rows: tuple[DemoRow, ...]
    report: str | None
    bundle: str
    passed: bool
    notes: tuple[str, ...]
    seconds: float

    def to_dict(self) -> dict:
        out = asdict(self)
        out["rows"] = [r.to_dict() for r in self.rows]
        out["notes"] = list(self.notes)
        return out


def demo(model: str = "cnn", out: str | os.PathLike = "out/demo", *, samples: str | os.PathLike | None = None,
         target: str = catalogue.DEMO_DEFAULT, progress: Callable[[str], None] | None = None) -> DemoResult:
    """Runs export, quantize, verify, bench and bundle on a sample model and summarizes them.

    Args:
        model: "cnn" (default), "mlp", "gru" or "mobilenet" (a MobileNetV2 on camera-like JPEGs, its Resizing and
            Rescaling inside).
        out: folder for everything it writes (replaced files inside it). Defaults to "out/demo".
        samples: the repository's `sample_models/` folder. Defaults to the one beside dlkit's source, or
            `$DLKIT_SAMPLES`.
        target: the bundle's device, "rpi4", "rpi5", "aarch64" or "x86_64". Defaults to "rpi5".
        progress: called with a line per stage.

    Returns:
        A `DemoResult`.
    """
    import dlkit

    started = time.perf_counter()
    if model not in DEMOS:
        raise InvalidInputError(f"demo model {model!r} is not one of {', '.join(DEMOS)}")
    say = progress or (lambda line: None)
    root = _samples_root(samples)
    datasets = _import_samples(root)
    name = DEMOS[model]
    keras_file = root / "trained" / f"{name}.keras"
    folder = Path(out) / model
    folder.mkdir(parents=True, exist_ok=True)
    data = _data(model, datasets, folder)
    notes: list[str] = []

    say(f"1/5 export {keras_file.name} to ONNX, checked against Keras on real samples")
    exported = dlkit.export(keras_file, folder / f"{name}.onnx", force=True, sample_data=data["sample"],
                            num_samples=256, input_specs=GRU_SPECS if model == "gru" else (),
                            rename=GRU_RENAME if model == "gru" else None,
                            labels=root / "trained" / LABELS[model] if model in LABELS else None,
                            preprocessing={"scale": 1 / 255} if model in ("cnn", "mlp") else None)
    say(f"    max abs error {exported.max_abs_error:.2g} on {exported.num_samples} samples")

    say("2/5 quantize to static int8, calibrated on the shipped training data")
    quantized = dlkit.quantize(exported.path, folder / f"{name}.int8.onnx", mode="static", force=True,
                               calibration=data["calib"], eval_data=data.get("eval"), target=target,
                               progress=lambda done, total: None)
    say(f"    {quantized.size_ratio:.0%} of the float file, output error {quantized.output_error:.3g}, "
        f"int8 for {quantized.target} (the bundle's {target})")
    for warning in quantized.warnings:
        say(f"    warning: {warning}")

    say("3/5 verify Keras, ONNX and int8 on real test data")
    report = None
    if model == "gru":
        accuracy = _gru_accuracy(keras_file, exported.path, quantized.path, data)
        passed = accuracy["onnx int8"] >= accuracy["onnx float"] - 0.01
        notes.append("GRU accuracy is next-character top-1 on held-out Tiny Shakespeare windows")
    else:
        verified = dlkit.verify(keras_file, [exported.path, quantized.path], data=data["eval"],
                                report=folder / "report.html")
        report, passed = verified.report, verified.passed
        first = [c.outputs[0] for c in verified.candidates]
        accuracy = {"keras": first[0].reference_accuracy, "onnx float": first[0].candidate_accuracy,
                    "onnx int8": first[1].candidate_accuracy}

    say("4/5 benchmark at batch 1: a Keras call against dlkit's runtime")
    latency = _latencies(keras_file, exported.path, quantized.path, data["bench"], model)

    say(f"5/5 bundle the int8 model for {target}")
    bundled = dlkit.bundle(quantized.path, folder / f"bundle-{target}", target=target, float_model=exported.path,
                           force=True)
    notes += list(bundled.warnings)

    sizes = {"keras": keras_file.stat().st_size, "onnx float": exported.size_bytes,
             "onnx int8": quantized.size_after_bytes}
    rows = tuple(DemoRow(k, float(accuracy[k]), sizes[k], latency[k], latency["keras"] / latency[k])
                 for k in ("keras", "onnx float", "onnx int8"))
    return DemoResult(model, str(folder), rows, report, bundled.path, bool(passed), tuple(notes),
                      round(time.perf_counter() - started, 1))


def _samples_root(samples) -> Path:
    candidates = [Path(samples)] if samples else []
    if os.environ.get("DLKIT_SAMPLES"):
        candidates.append(Path(os.environ["DLKIT_SAMPLES"]))
    candidates.append(Path(__file__).resolve().parents[2] / "sample_models")
    for path in candidates:
        if (path / "trained").is_dir() and (path / "datasets.py").is_file():
            return path
    raise InvalidInputError(f"dlkit demo needs the repository's sample_models/ folder (looked in "
                            f"{', '.join(map(str, candidates))}); run it from a clone or pass --samples")


def _import_samples(root: Path) -> Any:
    from dlkit.core import dependencies as _deps

    _deps.require("keras", "dlkit demo")  # TensorFlow loads quietly before the sample architectures import it
    sys.path.insert(0, str(root.parent))
    try:
        importlib.import_module(f"{root.name}.architectures")  # registers the subclassed models with Keras
        return importlib.import_module(f"{root.name}.datasets")
    finally:
        sys.path.remove(str(root.parent))


def _data(model: str, datasets: Any, folder: Path) -> dict[str, Any]:
    """Calibration and evaluation files plus in-memory samples, all from the shipped data."""
    if model == "gru":
        ids = datasets.encode(datasets.load_text(shipped_only=True))
        cut = int(len(ids) * 0.9)  # calibrate on the first 90% of the text, evaluate on the rest
        train = np.stack([ids[s:s + 100] for s in range(0, cut - 101, 397)][:256]).astype(np.int32)
        starts = np.linspace(cut, len(ids) - 102, _EVAL_TEXT_WINDOWS).astype(int)
        held = np.stack([ids[s:s + 101] for s in starts]).astype(np.int32)
        zeros = np.zeros((len(train), 256), np.float32)
        np.savez(folder / "calibration.npz", x=train, hidden=zeros)
        return {"calib": folder / "calibration.npz", "sample": {"x": train, "hidden": zeros},
                "eval_x": held[:, :100], "eval_y": held[:, 1:],
                "bench": {"x": held[:1, :100], "hidden": np.zeros((1, 256), np.float32)}}
    if model == "mobilenet":
        return _photo_data(datasets)
    kind = "cnn" if model == "cnn" else "mlp"
    train, _ = datasets.load_mnist("train", shipped_only=True)
    images, labels = datasets.load_mnist("test", shipped_only=True)
    x = datasets.mnist_for(kind, images)
    np.savez(folder / "calibration.npz", pixels=datasets.mnist_for(kind, train[:1000]))
    np.savez(folder / "mnist_test.npz", pixels=x, y=labels)
    return {"calib": folder / "calibration.npz", "eval": folder / "mnist_test.npz", "sample": {"pixels": x[:1000]},
            "bench": {"pixels": x[:1]}}


def _photo_data(datasets: Any) -> dict[str, Any]:
    """The JPEG folders themselves (calibration on the training photos, verification on the test photos), and
    test photos decoded in memory for the export's check and the benchmark."""
    photos = Path(datasets.__file__).resolve().parent / "data" / "photos"
    from PIL import Image

    files = sorted((photos / "test").glob("*/*.jpg"))[::4][:_PHOTO_SAMPLES]
    x = np.stack([np.asarray(Image.open(f).convert("RGB"), np.float32) for f in files])
    return {"calib": photos / "train", "eval": photos / "test", "sample": {"image": x}, "bench": {"image": x[:1]}}


def _gru_accuracy(keras_file: Path, float_path: str, int8_path: str, data: dict) -> dict[str, float]:
    import keras

    from dlkit_runtime import Model

    x, y = data["eval_x"], data["eval_y"]
    hidden = np.zeros((len(x), 256), np.float32)
    keras_logits = np.asarray(keras.saving.load_model(keras_file, compile=False)(x, hidden)[0])
    out = {"keras": float((keras_logits.argmax(-1) == y).mean())}
    for name, path in (("onnx float", float_path), ("onnx int8", int8_path)):
        logits = Model(path).predict({"x": x, "hidden": hidden})["logits"]
        out[name] = float((logits.argmax(-1) == y).mean())
    return out


def _latencies(keras_file: Path, float_path: str, int8_path: str, feeds: dict, model: str) -> dict[str, float]:
    """Median ms at batch 1, each form timed for the same budget, interleaved over three rounds."""
    import keras
    import tensorflow as tf

    from dlkit_runtime import Model

    keras_model = keras.saving.load_model(keras_file, compile=False)
    args = [tf.constant(feeds[k]) for k in feeds]
    runs = {"keras": (lambda: keras_model(*args, training=False)) if model != "gru" else (lambda: keras_model(*args))}
    for name, path in (("onnx float", float_path), ("onnx int8", int8_path)):
        runtime = Model(path)
        runs[name] = lambda m=runtime: m.predict(feeds)
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(3):
        for name, run in runs.items():
            run()
            samples, deadline = [], time.perf_counter() + _LATENCY_BUDGET_S / 3
            while len(samples) < 5 or time.perf_counter() < deadline:
                start = time.perf_counter()
                run()
                samples.append(time.perf_counter() - start)
            times[name].append(statistics.median(samples) * 1e3)
    return {k: min(v) for k, v in times.items()}
