"""Runs this bundle's model on one input file and prints the prediction as JSON.

    .venv/bin/python predict.py INPUT [--top-k 5] [--softmax] [--model FILE] [--output out.npz]
    .venv/bin/python predict.py --check                         # load the model, check its sha256, print the manifest
    .venv/bin/python predict.py --watch inbox --outbox outbox   # the service: each file dropped in inbox/ -> JSON

INPUT is a .npy (a one-input model), a .npz keyed by input name, or an image: a JPEG or PNG from a camera or phone
(BMP, GIF, WebP, TIFF too), resized and scaled for the model (Pillow, installed by install.sh for image models;
without it 8-bit PNG only), or a PCM .wav for an audio model (at its sample rate; padded or cut to its length).
The model's sha256 is checked against manifest.json before it is loaded; a modified model is refused (exit code 2).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the bundled dlkit_runtime, whatever else is installed

from dlkit_runtime.audio import SUFFIXES as _SOUNDS  # noqa: E402
from dlkit_runtime.errors import DlkitError  # noqa: E402
from dlkit_runtime.images import SUFFIXES as _IMAGES  # noqa: E402
from dlkit_runtime.manifest import open_model, read_manifest  # noqa: E402

_SUFFIXES = (".npy", ".npz", *_IMAGES, *_SOUNDS)
BATCH = 256  # samples per run for a large input file


def predict_file(model, path: Path, top_k: int = 5, output: Path | None = None, softmax: bool = False) -> dict:
    """The JSON-safe prediction of `model` on the input file `path`."""
    from dlkit_runtime.datafiles import read_inputs, write_outputs

    x = read_inputs(path, model)
    if isinstance(x, dict) and len(x) == 1 and len(model.inputs) == 1:
        x = next(iter(x.values()))  # one array in an .npz: the only input, whatever its name
    start = time.perf_counter()
    outputs = _predict(model, x)
    seconds = time.perf_counter() - start
    result = {"input": str(path), "model": model.path.name, "latency_ms": seconds * 1000,
              "outputs": {name: {"dtype": str(v.dtype), "shape": list(v.shape), "values": v.tolist()}
                          for name, v in outputs.items()}}
    first = outputs[model.outputs[0].name]
    if top_k and first.ndim == 2 and first.dtype.kind == "f":
        from dlkit_runtime.classes import ranked

        name = model.outputs[0].name  # each class's value named for what it is: logit, probability, ...
        result["top_k"] = [[p.to_dict() for p in row]
                           for row in ranked(first, top_k, model.labels, name, model.output_kind(name), softmax)]
    if output is not None:
        write_outputs(output, outputs)
        result["saved"] = str(output)
    return result


def _predict(model, x, size: int = BATCH) -> dict:
    """`model.predict(x)`, `size` samples at a time for a large file (a Pi has little memory for the activations of
    thousands of samples at once), when every output has the batch axis first."""
    count = len(next(iter(x.values()))) if isinstance(x, dict) else len(x)
    if count <= size:
        return model.predict(x)
    parts = list(model.predict_batches(x, size))
    if any(v.ndim == 0 or v.shape[0] != size for v in parts[0].values()):
        return model.predict(x)  # an output without a batch axis first: the file whole
    import numpy as np

    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def watch(model, inbox: Path, outbox: Path, top_k: int, interval: float, once: bool, softmax: bool = False) -> None:
    """Predicts each input file that appears in `inbox`, writes `outbox/<name>.json` and removes the input."""
    inbox.mkdir(parents=True, exist_ok=True)
    outbox.mkdir(parents=True, exist_ok=True)
    while True:
        files = sorted(p for p in inbox.iterdir() if p.suffix.lower() in _SUFFIXES and p.is_file())
        for path in files:
            try:
                result = predict_file(model, path, top_k, softmax=softmax)
            except DlkitError as err:
                result = {"input": str(path), "error": str(err)}
            tmp = outbox / f".{path.name}.json.tmp"
            tmp.write_text(json.dumps(result))
            tmp.replace(outbox / f"{path.name}.json")
            path.unlink()
        if once and not files:
            return
        time.sleep(interval)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Run this bundle's model; prints JSON.")
    parser.add_argument("input", nargs="?", type=Path, help=".npy, .npz, or an image (JPEG, PNG, ...)")
    parser.add_argument("--model", help="which bundled model file to run (default: the manifest's first)")
    parser.add_argument("--top-k", type=int, default=5, help="top classes per sample for a (batch, classes) output")
    parser.add_argument("--softmax", action="store_true",
                        help="give the top classes' probabilities (softmax of logits), not the output's own values")
    parser.add_argument("--output", type=Path, help="also save all outputs to this .npz")
    parser.add_argument("--threads", type=int, help="intra-op threads (default: the manifest's)")
    parser.add_argument("--check", action="store_true", help="load the model, check its sha256 and exit")
    parser.add_argument("--watch", type=Path, metavar="INBOX", help="serve: predict each file dropped into INBOX")
    parser.add_argument("--outbox", type=Path, help="where --watch writes <name>.json (default: INBOX/../outbox)")
    parser.add_argument("--interval", type=float, default=0.5, help="--watch polling interval in seconds")
    parser.add_argument("--once", action="store_true", help="--watch: stop when the inbox is empty")
    args = parser.parse_args(argv)
    if args.input is None and not args.check and args.watch is None:
        parser.error("give an INPUT file, --check or --watch INBOX")
    try:
        model = open_model(HERE, args.model, threads=args.threads)
        if args.check:
            manifest = read_manifest(HERE)
            print(json.dumps({"ok": True, "model": model.path.name, "sha256": manifest.model(args.model).sha256,
                              "providers": list(model.providers), "threads": model.threads}))
        elif args.watch is not None:
            watch(model, args.watch, args.outbox or args.watch.parent / "outbox", args.top_k, args.interval, args.once, args.softmax)
        else:
            print(json.dumps(predict_file(model, args.input, args.top_k, args.output, args.softmax)))
    except DlkitError as err:
        print(f"Error: {err}", file=sys.stderr)
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
