"""The main job on a sample model, end to end as far as dlkit goes today: export to ONNX with the parity check,
then both models' accuracy on the 10,000 real MNIST test images.

Run it with `./dev demo` (which sets everything up), or `python -m sample_models.demo [--model cnn]`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MODELS = {"cnn": "cnn", "mlp": "mlp_digits"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="cnn")
    parser.add_argument("--out", type=Path, default=HERE.parent / "out")
    args = parser.parse_args()

    import dlkit
    from sample_models import datasets

    name = MODELS[args.model]
    kind = "cnn" if args.model == "cnn" else "mlp"
    args.out.mkdir(parents=True, exist_ok=True)
    images, labels = datasets.load_mnist("test", shipped_only=True)
    x = datasets.mnist_for(kind, images)

    print(f"1/2 export sample_models/trained/{name}.keras to ONNX, checked on 1000 real MNIST test images")
    result = dlkit.export(HERE / "trained" / f"{name}.keras", args.out / f"{name}.onnx", sample_data={"pixels": x[:1000]},
                          num_samples=1000, labels=HERE / "trained" / "labels_digits.txt",
                          preprocessing={"scale": 1 / 255, "layout": "NHWC" if kind == "cnn" else "NC"}, force=True)
    print(f"    {result.path}: {result.size_bytes / 1024:.0f} KB, max abs error {result.max_abs_error:.2g} "
          f"(atol {result.atol:g}), {result.seconds:.1f} s")

    print("2/2 accuracy of Keras and ONNX on all 10000 MNIST test images")
    import keras
    import onnxruntime as ort

    model = keras.saving.load_model(HERE / "trained" / f"{name}.keras", compile=False)
    session = ort.InferenceSession(result.path, providers=["CPUExecutionProvider"])
    rows = []
    for label, predict in [("keras", lambda b: np.asarray(model(b, training=False))),
                           ("onnx", lambda b: session.run(None, {"pixels": b})[0])]:
        started = time.perf_counter()
        predictions = np.concatenate([predict(x[i:i + 500]).argmax(-1) for i in range(0, len(x), 500)])
        rows.append((label, float((predictions == labels).mean()), time.perf_counter() - started, predictions))
    agreement = float((rows[0][3] == rows[1][3]).mean())
    print(f"\n    {'model':<6} {'accuracy':>9} {'10k images':>11}")
    for label, accuracy, seconds, _ in rows:
        print(f"    {label:<6} {accuracy:>9.4f} {seconds:>10.2f}s")
    print(f"    top-1 agreement keras/onnx: {agreement:.4f}")


if __name__ == "__main__":
    main()
